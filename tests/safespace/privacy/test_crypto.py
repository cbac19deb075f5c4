"""Encryption at rest: AES-256-GCM checked against the GCM specification's test vectors."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from safespace.privacy.crypto import HEADER_BYTES, Keyring, KeyringError, associated_data

VECTORS = json.loads((Path(__file__).with_name("vectors") / "aes_gcm.json").read_text())["vectors"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_aes_gcm_matches_the_published_vectors(vector: dict[str, str]) -> None:
    key, iv = bytes.fromhex(vector["key"]), bytes.fromhex(vector["iv"])
    sealed = AESGCM(key).encrypt(iv, bytes.fromhex(vector["plaintext"]), bytes.fromhex(vector["aad"]) or None)
    assert sealed.hex() == vector["ciphertext"] + vector["tag"]


def test_keyring_seals_with_the_vector_primitive(tmp_path: Path) -> None:
    """Our format is exactly header | AES-GCM(key, nonce, text, header + associated data)."""
    vector = VECTORS[3]
    keyring = Keyring({1: bytes.fromhex(vector["key"])})
    nonce = bytes.fromhex(vector["iv"])
    sealed = keyring.seal("hello", b"row", nonce=nonce)
    header = sealed[:HEADER_BYTES]
    assert header == b"\x01\x00\x00\x00\x01" + nonce
    assert sealed[HEADER_BYTES:] == AESGCM(bytes.fromhex(vector["key"])).encrypt(nonce, b"hello", header + b"row")
    assert keyring.open(sealed, b"row") == "hello"


def test_a_ciphertext_does_not_open_in_another_row_or_column(tmp_path: Path) -> None:
    keyring = Keyring.load(tmp_path / "keys")
    sealed = keyring.seal("we shipped late", associated_data("released_comment", "body", "r/1"))
    with pytest.raises(KeyringError):
        keyring.open(sealed, associated_data("released_comment", "body", "r/2"))
    with pytest.raises(KeyringError):
        keyring.open(sealed, associated_data("story", "body", "r/1"))
    tampered = sealed[:1] + (2).to_bytes(4, "big") + sealed[5:]
    with pytest.raises(KeyringError):
        keyring.open(tampered, associated_data("released_comment", "body", "r/1"))


def test_two_seals_of_the_same_text_differ(tmp_path: Path) -> None:
    keyring = Keyring.load(tmp_path / "keys")
    assert keyring.seal("same", b"x") != keyring.seal("same", b"x")


def test_key_file_is_private_and_rotation_keeps_old_text_readable(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    keyring = Keyring.load(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    old = keyring.seal("before rotation", b"a")
    first = keyring.current_id
    assert first != Keyring.load(tmp_path / "another").current_id, "a new key file's first id is random"
    new_id = keyring.add_key()
    assert Keyring.load(path).current_id == new_id == first + 1
    assert keyring.open(old, b"a") == "before rotation"
    assert keyring.key_id_of(keyring.seal("after", b"a")) == new_id
    keyring.retire_older_keys()
    with pytest.raises(KeyringError, match="restore it from your backup"):
        Keyring.load(path).open(old, b"a")


def test_a_running_server_picks_up_a_rotated_key(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    server = Keyring.load(path)
    operator = Keyring.load(path)
    rotated = operator.add_key()
    assert server.key_id_of(server.seal("new comment", b"a")) == rotated
