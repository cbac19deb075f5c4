"""Answer tokens are signed in a process of their own: the loop keeps answering, each key is parsed once there."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from safespace.privacy import blind, signing, token_keys
from safespace.privacy.crypto import Keyring
from tests.safespace.privacy.test_token_signing import loop_ticks_during


def _blinded(key: token_keys.NewKey) -> tuple[bytes, bytes, bytes]:
    public = token_keys.public_key(key.public_der)
    msg = blind.prepare(os.urandom(32))
    blinded, inv = blind.blind(public, msg)
    return msg, blinded, inv


async def test_the_loop_answers_while_the_signing_process_is_busy() -> None:
    # A slow signature stands in as a 0.3 s sleep in the signing process: it blocks that process only.
    ticks = await loop_ticks_during(signing.signer().run(time.sleep, 0.3))
    assert ticks >= 10, "the event loop stood still while the signing process worked"
    assert await signing.signer().run(os.getpid) != os.getpid()


async def test_a_batch_is_signed_and_each_key_parsed_once(keyring: Keyring, round_key: token_keys.NewKey) -> None:
    parsed_before = await signing.signer().run(signing.parses)
    public = token_keys.public_key(round_key.public_der)
    for _ in range(2):
        tokens = [_blinded(round_key) for _ in range(3)]
        jobs = [(round_key.id, round_key.private_sealed, blinded) for _msg, blinded, _inv in tokens]
        signatures = await signing.sign_all(keyring, "round_key", jobs)
        for (msg, _blinded_msg, inv), blind_sig in zip(tokens, signatures, strict=True):
            blind.verify(public, msg, blind.finalize(public, msg, blind_sig, inv))
    assert await signing.signer().run(signing.parses) - parsed_before == 1


async def test_a_refused_message_is_refused_alone(keyring: Keyring, round_key: token_keys.NewKey) -> None:
    _msg, blinded, _inv = _blinded(round_key)
    short, good = await signing.sign_all(
        keyring, "round_key", [(round_key.id, round_key.private_sealed, b"short"), (round_key.id, round_key.private_sealed, blinded)]
    )
    assert isinstance(short, signing.Refused) and "blinded message must be 256 bytes" in short.reason
    assert isinstance(good, bytes)


async def test_a_killed_signing_process_fails_its_batch_and_the_next_starts_a_new_one(
    keyring: Keyring, round_key: token_keys.NewKey
) -> None:
    first = signing.signer()
    busy = asyncio.create_task(first.run(time.sleep, 5))
    await asyncio.sleep(0.1)
    first.process.kill()
    with pytest.raises(signing.SignerGone):
        await asyncio.wait_for(busy, 5)
    _msg, blinded, _inv = _blinded(round_key)
    (signature,) = await signing.sign_all(keyring, "round_key", [(round_key.id, round_key.private_sealed, blinded)])
    assert isinstance(signature, bytes)
    assert signing.signer() is not first
