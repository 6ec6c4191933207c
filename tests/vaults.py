"""A fixed master key for tests: tests never read or create a key file of the user's."""

from __future__ import annotations

from payrail.vault.envelope import Vault
from payrail.vault.keyring import Keyring

MASTER_KEY = bytes(range(32))


def fixed_keyring() -> Keyring:
    return Keyring({1: MASTER_KEY}, None)


def fixed_vault() -> Vault:
    return Vault(fixed_keyring())
