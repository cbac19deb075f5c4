"""A keyring in the test's folder and a round's answer-token key sealed with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from safespace.privacy import token_keys
from safespace.privacy.crypto import Keyring


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    return Keyring.load(tmp_path / "keys")


@pytest.fixture
async def round_key(keyring: Keyring) -> token_keys.NewKey:
    return await token_keys.new_key(keyring, "round_key", 2048)
