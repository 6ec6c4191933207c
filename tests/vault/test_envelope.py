"""Envelope encryption against the real database: sealing, binding, rotation while a
running process keeps working, master keys from the variable, a file and the default."""

from __future__ import annotations

import base64
import os
import stat
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from psycopg_pool import AsyncConnectionPool

from payrail.clock import ManualClock
from payrail.vault.envelope import CVC_TTL, CvcStore, Vault, card_context
from payrail.vault.keyring import Keyring, MasterKeyError
from tests.vaults import MASTER_KEY, fixed_keyring

NUMBER = "4242424242424242"
PM_1, OLD, NEW = (card_context(pm, "mer_a") for pm in ("pm_1", "pm_old", "pm_new"))


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


# --- master keys --------------------------------------------------------------------------------


def test_the_variable_holds_one_key_or_versions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PAYRAIL_MASTER_KEY", b64(MASTER_KEY))
    assert Keyring.from_env(tmp_path).versions == {1: MASTER_KEY}
    other = bytes(32)
    monkeypatch.setenv("PAYRAIL_MASTER_KEY", f"1:{b64(MASTER_KEY)},3:{b64(other)}")
    keyring = Keyring.from_env(tmp_path)
    assert keyring.versions == {1: MASTER_KEY, 3: other} and keyring.current == 3
    assert not (tmp_path / "master.key").exists()


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("not base64!", "not base64"),
        (b64(bytes(16)), "32 bytes"),
        (f"x:{b64(MASTER_KEY)}", "bad version"),
        (f"0:{b64(MASTER_KEY)}", "bad version"),
    ],
)
def test_a_bad_variable_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str, complaint: str
) -> None:
    monkeypatch.setenv("PAYRAIL_MASTER_KEY", value)
    with pytest.raises(MasterKeyError, match=complaint) as raised:
        Keyring.from_env(tmp_path)
    assert "PAYRAIL_MASTER_KEY" in str(raised.value)


def test_the_default_key_file_is_made_once_and_private(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PAYRAIL_MASTER_KEY", raising=False)
    monkeypatch.delenv("PAYRAIL_MASTER_KEY_FILE", raising=False)
    first = Keyring.from_env(tmp_path / "data")
    path = tmp_path / "data" / "master.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Keyring.from_env(tmp_path / "data").versions == first.versions
    assert first.file == path


def test_a_key_file_gains_versions_and_the_variable_cannot(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# payrail master keys\n1 {b64(MASTER_KEY)}\n")
    monkeypatch.delenv("PAYRAIL_MASTER_KEY", raising=False)
    monkeypatch.setenv("PAYRAIL_MASTER_KEY_FILE", str(path))
    keyring = Keyring.from_env(tmp_path)
    assert keyring.add_version() == 2
    assert set(Keyring.from_env(tmp_path).versions) == {1, 2}
    path.write_text("1 zzz\n")
    with pytest.raises(MasterKeyError, match=f"{path}:1"):
        Keyring.from_env(tmp_path)
    with pytest.raises(MasterKeyError, match="PAYRAIL_MASTER_KEY"):
        fixed_keyring().add_version()


# --- sealing and rotation -------------------------------------------------------------------------


async def test_a_sealed_number_opens_only_on_its_own_row(
    pool: AsyncConnectionPool, clock: ManualClock
) -> None:
    vault = Vault(fixed_keyring())
    async with pool.connection() as conn:
        key_id, sealed = await vault.seal(conn, PM_1, NUMBER, clock.now())
        assert NUMBER.encode() not in sealed
        assert await vault.open(conn, PM_1, key_id, sealed) == NUMBER
        for pm, merchant in (("pm_2", "mer_a"), ("pm_1", "mer_b")):
            with pytest.raises(InvalidTag):
                await vault.open(conn, card_context(pm, merchant), key_id, sealed)
        # Another process with the same master key opens it from the stored wrapped key.
        assert await Vault(fixed_keyring()).open(conn, PM_1, key_id, sealed) == NUMBER
        with pytest.raises(InvalidTag):
            await Vault(Keyring({1: bytes(32)}, None)).open(conn, PM_1, key_id, sealed)


async def test_rotation_while_running_keeps_every_card_open(
    pool: AsyncConnectionPool, clock: ManualClock, tmp_path: Path
) -> None:
    path = tmp_path / "keys"
    path.write_text(f"1 {b64(MASTER_KEY)}\n")
    running = Vault(Keyring({1: MASTER_KEY}, path))  # the API process
    operator = Vault(Keyring({1: MASTER_KEY}, path))  # `payrail keys rotate --master`
    async with pool.connection() as conn:
        old_key, old_sealed = await running.seal(conn, OLD, NUMBER, clock.now())
        fingerprint = await running.fingerprint(conn, "mer_a", NUMBER, clock.now())

        assert operator.keyring.add_version() == 2
        async with conn.transaction():
            rotation = await operator.rotate(conn, clock.now())
        assert rotation.master_version == 2 and rotation.rewrapped == 2  # data + fingerprint
        cur = await conn.execute("SELECT DISTINCT master_version FROM vault_keys")
        assert await cur.fetchall() == [(2,)]

        # The running process seals new cards under the new data key (its keyring reads
        # the file again for version 2) and still opens the old ones.
        new_key, new_sealed = await running.seal(conn, NEW, NUMBER, clock.now())
        assert new_key == rotation.data_key_id != old_key
        assert await running.open(conn, OLD, old_key, old_sealed) == NUMBER
        assert await running.fingerprint(conn, "mer_a", NUMBER, clock.now()) == fingerprint

        # A process started after the rotation needs only the newest master key.
        fresh = Vault(Keyring({2: operator.keyring.key(2)}, None))
        assert await fresh.open(conn, OLD, old_key, old_sealed) == NUMBER
        assert await fresh.open(conn, NEW, new_key, new_sealed) == NUMBER
        assert await fresh.fingerprint(conn, "mer_a", NUMBER, clock.now()) == fingerprint


async def test_fingerprints_are_keyed_per_merchant(
    pool: AsyncConnectionPool, clock: ManualClock
) -> None:
    vault = Vault(fixed_keyring())
    async with pool.connection() as conn:
        a = await vault.fingerprint(conn, "mer_a", NUMBER, clock.now())
        assert a == await vault.fingerprint(conn, "mer_a", NUMBER, clock.now())
        assert a != await vault.fingerprint(conn, "mer_b", NUMBER, clock.now())
        assert a != await vault.fingerprint(conn, "mer_a", "4000056655665556", clock.now())
    assert NUMBER not in a


def test_a_cvc_is_handed_out_once_and_forgotten_after_its_ttl(clock: ManualClock) -> None:
    store = CvcStore()
    store.keep("pm_1", "123", clock.now())
    store.keep("pm_2", "456", clock.now())
    assert store.take("pm_1", clock.now()) == "123"
    assert store.take("pm_1", clock.now()) is None
    assert store.take("pm_2", clock.now() + CVC_TTL + timedelta(seconds=1)) is None
    store.keep("pm_3", "789", clock.now())
    store.keep("pm_4", "000", clock.now() + CVC_TTL + timedelta(seconds=1))
    assert "pm_3" not in store.held, "expired CVCs are dropped, not kept around"
    # Any use of the store drops what has expired, a card created or not.
    store.take("pm_none", clock.now() + 3 * CVC_TTL)
    assert not store.held


def test_a_key_file_with_a_version_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"1 {b64(MASTER_KEY)}\n2 {b64(bytes(32))}\n2 {b64(MASTER_KEY)}\n")
    with pytest.raises(MasterKeyError, match="version 2 appears twice"):
        Keyring({1: MASTER_KEY}, path).key(2)


def test_concurrent_master_rotations_add_distinct_versions(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"1 {b64(MASTER_KEY)}\n")
    added: list[int] = []
    threads = [
        threading.Thread(target=lambda: added.append(Keyring({1: MASTER_KEY}, path).add_version()))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(added) == list(range(2, 10))
    keyring = Keyring({1: MASTER_KEY}, path)
    assert keyring.key(9) and len(keyring.versions) == 9
