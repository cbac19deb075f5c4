"""Answer tokens are signed in a process of their own: the loop keeps answering, each key is parsed once there."""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
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


async def _worker_pid() -> int:
    return await signing.signer().run(os.getpid)


def _signers_alive() -> list[multiprocessing.Process]:
    return [child for child in multiprocessing.active_children() if child.name == "safespace-signer"]


def test_loops_run_one_after_another_share_one_signing_process() -> None:
    # As a command's asyncio.run calls or the test suite's loops: the second loop takes over the
    # first one's worker instead of starting (and leaving behind) one of its own.
    first = asyncio.run(_worker_pid())
    alive = len(_signers_alive())
    assert [asyncio.run(_worker_pid()) for _ in range(3)] == [first] * 3
    assert len(_signers_alive()) == alive


def test_a_loop_closed_with_a_signature_in_flight_leaves_its_worker_to_end() -> None:
    async def leave_busy() -> int:
        worker = signing.signer()
        asyncio.get_running_loop().create_task(worker.run(time.sleep, 0.5))  # never awaited: its loop closes
        await asyncio.sleep(0.05)
        return worker.process.pid

    abandoned = asyncio.run(leave_busy())
    assert asyncio.run(_worker_pid()) != abandoned  # a fresh worker: no answer meant for the old loop
    gc.collect()  # the dropped signer closes its pipe; its worker ends once its sleep is over
    deadline = time.monotonic() + 10
    while abandoned in {child.pid for child in _signers_alive()} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert abandoned not in {child.pid for child in _signers_alive()}
