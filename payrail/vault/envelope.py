"""Envelope encryption of card numbers, keyed fingerprints, the CVC held in memory, rotation.

A secret (a card number, a connector's credentials) is sealed with AES-256-GCM under the
active data key, with the row it belongs to as associated data, so a sealed value
copied onto another row does not open. Data keys are stored wrapped by the master key
(keyring.py) and kept unwrapped only in this process's memory.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from payrail.ids import new_id
from payrail.vault import repository as repo
from payrail.vault.keyring import KEY_BYTES, NONCE_BYTES, Keyring
from payrail.vault.repository import Conn, Purpose, WrappedKey

# Long enough for a customer to confirm a payment after entering the card; a CVC that
# was not used by then is forgotten, as card rules require.
CVC_TTL = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Rotation:
    data_key_id: str
    rewrapped: int
    master_version: int


@dataclass
class CvcStore:
    """CVCs by payment method id, in memory only, each handed out once. Entries expire in
    the order they were kept (one TTL for all), so pruning takes only the expired ones off
    the front: constant work per call, however many cards are held."""

    held: OrderedDict[str, tuple[str, datetime]] = field(default_factory=OrderedDict)

    def _prune(self, now: datetime) -> None:
        while self.held:
            first = next(iter(self.held.values()))
            if first[1] > now:
                return
            self.held.popitem(last=False)

    def keep(self, payment_method_id: str, cvc: str, now: datetime) -> None:
        self._prune(now)
        self.held.pop(payment_method_id, None)
        self.held[payment_method_id] = (cvc, now + CVC_TTL)

    def take(self, payment_method_id: str, now: datetime) -> str | None:
        self._prune(now)
        cvc, until = self.held.pop(payment_method_id, (None, now))
        return cvc if until > now else None


def card_context(payment_method_id: str, merchant_id: str) -> str:
    """What a sealed card number is bound to: its payment method and merchant."""
    return f"{payment_method_id}|{merchant_id}"


class Vault:
    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self.cvcs = CvcStore()
        self._unwrapped: dict[str, bytes] = {}
        self._digest_key: bytes | None = None

    def _open_key(self, key: WrappedKey) -> bytes:
        if key.id not in self._unwrapped:
            self._unwrapped[key.id] = self.keyring.unwrap(key.id, key.master_version, key.wrapped)
        return self._unwrapped[key.id]

    def _new_key(self, purpose: Purpose) -> WrappedKey:
        key_id = new_id("vk")
        version, wrapped = self.keyring.wrap(key_id, secrets.token_bytes(KEY_BYTES))
        return WrappedKey(key_id, purpose, version, wrapped)

    async def _active(self, conn: Conn, purpose: Purpose, now: datetime) -> tuple[str, bytes]:
        # Made on first use too, so a vault that was never prepared still works.
        key = await repo.active_key(conn, purpose)
        if key is None:
            await repo.insert_first_key(conn, self._new_key(purpose), now)
            key = await repo.active_key(conn, purpose)
            assert key is not None
        return key.id, self._open_key(key)

    async def prepare(self, conn: Conn, now: datetime) -> None:
        """Make the first keys, if there are none yet, and check that the master key opens
        the active ones: at start-up, so a wrong master key fails there, not mid-payment."""
        for purpose in ("data", "fingerprint"):
            await self._active(conn, purpose, now)

    async def seal(
        self, conn: Conn, context: str, plaintext: str, now: datetime
    ) -> tuple[str, bytes]:
        """(data key id, nonce + ciphertext) of a secret. `context` names the row it
        belongs to; it is bound in as associated data, so the sealed value opens only
        with the same context."""
        key_id, key = await self._active(conn, "data", now)
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), context.encode())
        return key_id, nonce + sealed

    async def open(self, conn: Conn, context: str, key_id: str, sealed: bytes) -> str:
        key = self._unwrapped.get(key_id) or self._open_key(await repo.key(conn, key_id))
        nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
        return AESGCM(key).decrypt(nonce, ciphertext, context.encode()).decode()

    async def fingerprint(self, conn: Conn, merchant_id: str, number: str, now: datetime) -> str:
        """A keyed HMAC of the number, per merchant: equal for the same card at one
        merchant, unlinkable across merchants, useless without the key."""
        _, key = await self._active(conn, "fingerprint", now)
        digest = hmac.new(key, f"{merchant_id}|{number}".encode(), hashlib.sha256).digest()
        return digest[:12].hex()

    async def digest_key(self, conn: Conn, now: datetime) -> bytes:
        """A key for keyed digests of requests that may hold card data (the stored hash of
        an Idempotency-Key's parameters): derived from the fingerprint key, so it too
        survives rotation and is useless without the master key."""
        if self._digest_key is None:
            _, key = await self._active(conn, "fingerprint", now)
            self._digest_key = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=None, info=b"payrail request digest"
            ).derive(key)
        return self._digest_key

    async def rotate(self, conn: Conn, now: datetime) -> Rotation:
        """A new data key for new cards, and every key re-wrapped under the newest master
        key. Old cards keep their data key, so they still open. Call in a transaction."""
        keys = await repo.lock_keys(conn)
        version = self.keyring.current
        rewrapped = 0
        for key in keys:
            if key.master_version != version:
                _, wrapped = self.keyring.wrap(key.id, self._open_key(key))
                await repo.rewrap(conn, key.id, version, wrapped)
                rewrapped += 1
        retiring = await repo.active_key(conn, "data")
        if retiring is not None:
            await repo.retire_key(conn, retiring.id, now)
        fresh = self._new_key("data")
        await repo.insert_key(conn, fresh, now)
        return Rotation(fresh.id, rewrapped, version)
