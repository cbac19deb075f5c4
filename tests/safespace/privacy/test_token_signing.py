"""Token issuance: signing runs off the event loop, and each key is unsealed and parsed once per process."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from safespace.privacy import blind, token_keys
from safespace.privacy.crypto import Keyring
from safespace.privacy.token_keys import TokenRefused


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every private key token_keys parses, in order."""
    seen: list[bytes] = []
    real = token_keys.serialization.load_der_private_key

    def spy(data: bytes, *args, **kwargs):
        seen.append(data)
        return real(data, *args, **kwargs)

    monkeypatch.setattr(token_keys.serialization, "load_der_private_key", spy)
    return seen


async def loop_ticks_during(work: Awaitable[object]) -> int:
    """How many 10 ms sleeps the event loop finished while `work` ran: about 30 for 0.3 s of work
    done off the loop, 0 or 1 if the loop was blocked."""
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.02)
    before = ticks
    try:
        await work
    finally:
        ticker.cancel()
    return ticks - before


async def _token(keyring: Keyring, key: token_keys.NewKey, private_sealed: bytes | None = None) -> None:
    """Blind, sign through token_keys, finalize: the finalized signature must verify."""
    public = token_keys.public_key(key.public_der)
    msg = blind.prepare(os.urandom(32))
    blinded, inv = blind.blind(public, msg)
    blind_sig = await token_keys.sign(keyring, "round_key", key.id, private_sealed or key.private_sealed, blinded)
    blind.verify(public, msg, blind.finalize(public, msg, blind_sig, inv))


async def test_the_loop_answers_while_a_token_is_signed(
    keyring: Keyring, round_key: token_keys.NewKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    real, signed_in = blind.blind_sign, []

    def slow_sign(private_key: rsa.RSAPrivateKey, blinded_msg: bytes) -> bytes:
        signed_in.append(threading.get_ident())
        time.sleep(0.3)  # blocks whichever thread runs it
        return real(private_key, blinded_msg)

    monkeypatch.setattr(blind, "blind_sign", slow_sign)
    assert await loop_ticks_during(_token(keyring, round_key)) >= 10, "the event loop stood still while the token was signed"
    assert signed_in and signed_in[0] != threading.get_ident()


async def test_a_key_is_parsed_once_however_many_tokens_it_signs(
    keyring: Keyring, round_key: token_keys.NewKey, parses: list[bytes]
) -> None:
    await _token(keyring, round_key)
    await _token(keyring, round_key)
    assert len(parses) == 1


async def test_a_key_still_signs_after_the_keyring_is_rotated(
    keyring: Keyring, round_key: token_keys.NewKey, parses: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    await _token(keyring, round_key)
    keyring.add_key()
    aad = token_keys._aad("round_key", round_key.id)
    resealed = keyring.seal(keyring.open(round_key.private_sealed, aad), aad)  # as rotation.reseal_all does
    keyring.retire_older_keys()
    await _token(keyring, round_key, resealed)
    assert len(parses) == 1
    monkeypatch.setattr(token_keys, "_PARSED_KEYS", type(token_keys._PARSED_KEYS)())  # a process started since
    await _token(keyring, round_key, resealed)
    assert len(parses) == 2


async def test_a_refused_message_is_a_token_refusal(keyring: Keyring, round_key: token_keys.NewKey) -> None:
    with pytest.raises(TokenRefused, match="blinded message must be 256 bytes"):
        await token_keys.sign(keyring, "round_key", round_key.id, round_key.private_sealed, b"short")
