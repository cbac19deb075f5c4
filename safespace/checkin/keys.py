"""Each open check-in's own key: a file in `checkin-keys/` beside the round keys (same rules:
privacy/round_keys.py), destroyed when the check-in closes. A folder of its own, because the
schedule destroys every key in `round-keys/` that is not an open round's."""

from __future__ import annotations

from pathlib import Path

from safespace.privacy.crypto import Keyring
from safespace.privacy.round_keys import RoundKeys

_FOLDERS: dict[Path, RoundKeys] = {}


def checkin_keys(keyring: Keyring) -> RoundKeys:
    folder = keyring.rounds.folder.with_name("checkin-keys")
    found = _FOLDERS.get(folder)
    if found is None:
        found = _FOLDERS[folder] = RoundKeys(folder)
    return found
