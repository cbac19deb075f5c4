"""Per-round keys: an open round's per-answer state is written only sealed, and the key is
destroyed when the round closes.

Every answer changes a round's tallies, and a database keeps old versions of what it changes:
PostgreSQL in dead row versions and in its write-ahead log (and in a WAL archive or a replica,
for good), SQLite in its journal. Consecutive tally states differ by one member's answers, and
the ledger row that names the member is written beside them. So while a round is open its
tallies and pending comments are sealed (AES-256-GCM) under a key of that round alone, kept in a
file beside the other key files (never in the database). At close the final aggregate is
written in the clear and the key file is overwritten and removed: every earlier state, wherever
the database's files kept it, no longer opens. docs/THREAT_MODEL.md says what this does not
cover (a live administrator during the round; a file system that keeps overwritten blocks).

A sealed value: version byte 2 | 96-bit random nonce | ciphertext+tag, with associated data naming
the table, column and row. A tally written in the clear is JSON and starts with "{".
"""

from __future__ import annotations

import os
import secrets
import uuid
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SEALED = 2  # first byte of a value sealed under a round key (crypto.FORMAT_VERSION is 1)
NONCE_BYTES = 12


class RoundKeyError(Exception):
    """A round's key is missing or does not open the value: say which round and what to do."""


class RoundKeys:
    """The keys of open rounds, one file each in `folder` (mode 0600), shared by every process
    that uses the same data directory, as the other key files are."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._cache: dict[uuid.UUID, bytes] = {}

    def _path(self, round_id: uuid.UUID) -> Path:
        return self.folder / f"{uuid.UUID(str(round_id))}.key"

    def key(self, round_id: uuid.UUID) -> bytes:
        """The round's key, made on first use (a round opened before this existed gets one then).
        Two processes may make it at once: the first link wins and the other reads that one."""
        if (cached := self._cache.get(round_id)) is not None:
            return cached
        path = self._path(round_id)
        if not path.exists():
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            temporary = self.folder / f".{uuid.uuid4()}.tmp"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(32))
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(temporary, path)  # atomic, and never replaces a key another process made
            except FileExistsError:
                pass
            finally:
                temporary.unlink()
            _sync_folder(self.folder)
        key = path.read_bytes()
        if len(key) != 32:
            raise RoundKeyError(f"{path} is not a round key (expected 32 bytes)")
        self._cache[round_id] = key
        return key

    def seal(self, round_id: uuid.UUID, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        header = bytes([SEALED]) + nonce
        return header + AESGCM(self.key(round_id)).encrypt(nonce, plaintext, header + aad)

    def open(self, round_id: uuid.UUID, sealed: bytes, aad: bytes) -> bytes:
        if not is_sealed(sealed):
            raise RoundKeyError("not a value sealed under a round key")
        if not self.has(round_id):
            raise RoundKeyError(
                f"the key of round {round_id} is missing from {self.folder}: restore the data directory's "
                "round-keys folder from the same time as the database"
            )
        header, nonce = sealed[: 1 + NONCE_BYTES], sealed[1 : 1 + NONCE_BYTES]
        try:
            return AESGCM(self.key(round_id)).decrypt(nonce, sealed[1 + NONCE_BYTES :], header + aad)
        except InvalidTag:
            raise RoundKeyError(f"a value of round {round_id} does not open with its key, or was altered") from None

    def has(self, round_id: uuid.UUID) -> bool:
        return round_id in self._cache or self._path(round_id).exists()

    def held(self) -> set[uuid.UUID]:
        """The rounds whose key files exist."""
        found = set()
        for path in self.folder.glob("*.key") if self.folder.exists() else ():
            try:
                found.add(uuid.UUID(path.stem))
            except ValueError:
                continue
        return found

    def destroy(self, round_id: uuid.UUID) -> None:
        """Overwrite the key file, then remove it: what was sealed under it never opens again."""
        self._cache.pop(round_id, None)
        path = self._path(round_id)
        try:
            with path.open("r+b") as fh:
                fh.write(bytes(32))
                fh.flush()
                os.fsync(fh.fileno())
            path.unlink()
        except FileNotFoundError:
            return
        _sync_folder(self.folder)


def is_sealed(value: bytes) -> bool:
    return len(value) > 1 + NONCE_BYTES + 16 and value[0] == SEALED


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
