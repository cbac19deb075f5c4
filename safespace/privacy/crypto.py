"""Encryption at rest for free text (P6): AES-256-GCM from `cryptography`, keys outside the database.

A sealed value is: version byte 1 | key id (4 bytes, big-endian) | 96-bit random nonce | ciphertext+tag.
The associated data names the table, column and row, so a ciphertext copied to another row or
column fails to open. Fernet is not used: its tokens carry their creation time (see DESIGN P6).
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from safespace.privacy.round_keys import RoundKeys

FORMAT_VERSION = 1
NONCE_BYTES = 12
HEADER_BYTES = 1 + 4 + NONCE_BYTES


class KeyringError(Exception):
    """The key file is missing, unreadable or does not hold the key a ciphertext needs."""


def associated_data(table: str, column: str, row_id: object) -> bytes:
    return f"safespace:{table}:{column}:{row_id}".encode()


@dataclass
class Keyring:
    """Numbered AES-256 keys; the newest seals, every one of them can still open."""

    keys: dict[int, bytes]
    path: Path | None = None
    _mtime: float = 0.0
    _rounds: RoundKeys | None = field(default=None, repr=False)

    @property
    def rounds(self) -> RoundKeys:
        """Open rounds' own keys (privacy/round_keys.py), in `round-keys/` beside the key file."""
        if self._rounds is None:
            folder = self.path.parent if self.path is not None else Path(tempfile.mkdtemp(prefix="safespace-"))
            self._rounds = RoundKeys(folder / "round-keys")
        return self._rounds

    def refresh(self) -> None:
        """Pick up a key added by `safespace keys rotate` in another process."""
        if self.path is None:
            return
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime != self._mtime:
            self.keys = Keyring.load(self.path).keys
            self._mtime = mtime

    @property
    def current_id(self) -> int:
        return max(self.keys)

    def seal(self, plaintext: str, aad: bytes, nonce: bytes | None = None) -> bytes:
        self.refresh()
        key_id = self.current_id
        nonce = nonce or os.urandom(NONCE_BYTES)
        header = bytes([FORMAT_VERSION]) + key_id.to_bytes(4, "big") + nonce
        # The header is authenticated too: a changed key id or version fails to open.
        return header + AESGCM(self.keys[key_id]).encrypt(nonce, plaintext.encode(), header + aad)

    def open(self, sealed: bytes, aad: bytes) -> str:
        if len(sealed) < HEADER_BYTES + 16 or sealed[0] != FORMAT_VERSION:
            raise KeyringError("not a Safespace ciphertext")
        key_id = int.from_bytes(sealed[1:5], "big")
        if key_id not in self.keys:
            self.refresh()
        if key_id not in self.keys:
            raise KeyringError(f"key {key_id} is not in the key file; restore it from your backup")
        header, nonce = sealed[:HEADER_BYTES], sealed[5:HEADER_BYTES]
        try:
            return AESGCM(self.keys[key_id]).decrypt(nonce, sealed[HEADER_BYTES:], header + aad).decode()
        except InvalidTag:
            raise KeyringError("ciphertext does not belong to this row or was altered") from None

    def key_id_of(self, sealed: bytes) -> int:
        return int.from_bytes(sealed[1:5], "big")

    # --- the key file ---

    @classmethod
    def load(cls, path: Path) -> Keyring:
        """Read the key file, creating it (mode 0600) with one fresh key on first use. A new file's
        first key id is random, so a file made afresh never reuses the id of a lost one: data
        sealed with the lost key fails with "key N is not in the key file", not a wrong key."""
        if not path.exists():
            keyring = cls({secrets.randbelow(2**31 - 2**20) + 1: AESGCM.generate_key(bit_length=256)}, path)
            keyring.save()
            keyring._mtime = path.stat().st_mtime
            return keyring
        try:
            if path.is_dir():
                raise KeyringError(f"{path} is a directory, not a key file: point SAFESPACE_ENCRYPTION_KEY_FILE at the file.")
            if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise KeyringError(f"{path} can be read by other users; run `chmod 600 {path}`.")
            data = json.loads(path.read_text())
            keys = {int(k): bytes.fromhex(v) for k, v in data["keys"].items()}
        except OSError as exc:  # a directory, unreadable
            raise KeyringError(f"{path} cannot be read ({exc.strerror}); it must be the key file Safespace wrote.") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeyringError(f"{path} is not a Safespace key file ({exc})") from None
        if not keys or any(len(k) != 32 for k in keys.values()):
            raise KeyringError(f"{path} must hold 256-bit keys")
        return cls(keys, path, path.stat().st_mtime)

    def save(self) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"keys": {str(k): v.hex() for k, v in sorted(self.keys.items())}}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, self.path)  # never a half-written key file

    def add_key(self) -> int:
        """A new current key; older keys stay so existing ciphertexts still open until re-sealed."""
        new_id = self.current_id + 1
        self.keys[new_id] = secrets.token_bytes(32)
        self.save()
        return new_id

    def retire_older_keys(self) -> None:
        """Drop every key but the current one (after everything was re-sealed with it)."""
        self.keys = {self.current_id: self.keys[self.current_id]}
        self.save()
