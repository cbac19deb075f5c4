"""Receipt codes: shown once to a story's author, stored only as a slow salted hash.

A code is 16 characters from an alphabet without look-alikes (no 0/O, 1/I/L, U), written as
4 groups of 4. The first group is a locator kept in clear to find the row; the other twelve
(about 59 bits) are checked with scrypt, so a copy of the database cannot be searched for codes.
"""

from __future__ import annotations

import os
import secrets

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
GROUPS, GROUP_LENGTH = 4, 4
# scrypt cost: ~16 MiB and tens of milliseconds per check (RFC 7914's interactive parameters).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(GROUPS * GROUP_LENGTH))
    return "-".join(raw[i : i + GROUP_LENGTH] for i in range(0, len(raw), GROUP_LENGTH))


def normalize(code: str) -> str | None:
    """What a person typed, as the 16 characters; None if it cannot be a code."""
    raw = "".join(ch for ch in code.upper() if ch.isalnum())
    if len(raw) != GROUPS * GROUP_LENGTH or any(ch not in ALPHABET for ch in raw):
        return None
    return raw


def _kdf(salt: bytes) -> Scrypt:
    return Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)


def seal(code: str) -> tuple[str, bytes, bytes]:
    """(locator, salt, hash) to store for a new code."""
    raw = normalize(code)
    assert raw is not None
    salt = os.urandom(16)
    return raw[:GROUP_LENGTH], salt, _kdf(salt).derive(raw[GROUP_LENGTH:].encode())


def matches(raw: str, salt: bytes, stored: bytes) -> bool:
    try:
        _kdf(salt).verify(raw[GROUP_LENGTH:].encode(), stored)
    except InvalidKey:
        return False
    return True
