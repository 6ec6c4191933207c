"""Master keys (key-encrypting keys): they wrap the data keys and never enter the database.

Sources, first match wins:
- `PAYRAIL_MASTER_KEY`: `VERSION:BASE64[,VERSION:BASE64...]`, or one bare base64 key
  (version 1);
- `PAYRAIL_MASTER_KEY_FILE`: a file of `VERSION BASE64` lines;
- otherwise `master.key` in the data directory, created with one random key on first use
  (the embedded default; a fleet must share one key through the variable or a file).

The highest version wraps new data keys; every version listed still unwraps. A file can
gain a version while payrail runs: an unknown version makes the keyring read it again.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12


class MasterKeyError(Exception):
    """The master key configuration is missing, malformed or lacks a needed version."""


def _decode(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except binascii.Error as exc:
        raise MasterKeyError(f"{where}: not base64") from exc
    if len(key) != KEY_BYTES:
        raise MasterKeyError(f"{where}: a master key is {KEY_BYTES} bytes, not {len(key)}")
    return key


def _parse_variable(value: str) -> dict[int, bytes]:
    if ":" not in value:
        return {1: _decode(value, "PAYRAIL_MASTER_KEY")}
    versions: dict[int, bytes] = {}
    for item in value.split(","):
        version, _, key = item.partition(":")
        if not version.strip().isdigit() or int(version) < 1:
            raise MasterKeyError(f"PAYRAIL_MASTER_KEY: bad version {version.strip()!r}")
        versions[int(version)] = _decode(key, f"PAYRAIL_MASTER_KEY version {version.strip()}")
    return versions


def _parse_file(path: Path) -> dict[int, bytes]:
    versions: dict[int, bytes] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        version, _, key = line.strip().partition(" ")
        if not version.isdigit() or int(version) < 1:
            raise MasterKeyError(f"{path}:{number}: expected 'VERSION BASE64'")
        if int(version) in versions:
            # Two keys under one version: whichever won, some data keys would not open.
            raise MasterKeyError(f"{path}:{number}: version {version} appears twice")
        versions[int(version)] = _decode(key, f"{path}:{number}")
    if not versions:
        raise MasterKeyError(f"{path}: no master key")
    return versions


@dataclass
class Keyring:
    versions: dict[int, bytes]
    file: Path | None  # where to look again for a version added while running

    @classmethod
    def from_env(cls, data_dir: Path) -> Keyring:
        if value := os.environ.get("PAYRAIL_MASTER_KEY"):
            return cls(_parse_variable(value), None)
        if named := os.environ.get("PAYRAIL_MASTER_KEY_FILE"):
            return cls(_parse_file(Path(named)), Path(named))
        path = data_dir / "master.key"
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(f"1 {base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}\n")
        return cls(_parse_file(path), path)

    @property
    def current(self) -> int:
        return max(self.versions)

    def key(self, version: int) -> bytes:
        if version not in self.versions and self.file is not None:
            self.versions = _parse_file(self.file)
        try:
            return self.versions[version]
        except KeyError:
            raise MasterKeyError(f"master key version {version} is not configured") from None

    def add_version(self) -> int:
        """Append a new random version to the key file; the variable cannot be changed."""
        if self.file is None:
            raise MasterKeyError(
                "the master key comes from PAYRAIL_MASTER_KEY: add a version there"
                " (VERSION:BASE64,...), restart, then rotate"
            )
        # Locked from read to append: two rotations at once must not both add version N.
        with self.file.open("a") as out:
            fcntl.flock(out, fcntl.LOCK_EX)
            self.versions = _parse_file(self.file)
            version = self.current + 1
            out.write(f"{version} {base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}\n")
            out.flush()
            os.fsync(out.fileno())
        self.versions = _parse_file(self.file)
        return version

    def wrap(self, key_id: str, data_key: bytes) -> tuple[int, bytes]:
        version = self.current
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(self.key(version)).encrypt(nonce, data_key, key_id.encode())
        return version, nonce + sealed

    def unwrap(self, key_id: str, version: int, wrapped: bytes) -> bytes:
        nonce, sealed = wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:]
        return AESGCM(self.key(version)).decrypt(nonce, sealed, key_id.encode())
