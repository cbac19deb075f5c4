"""Blind signatures in a process of their own: the event loop's process keeps its core for requests.

A round's opening brings a burst of issuances. blind_sign lets go of the GIL during GMP's
exponentiations, but the Python work around each signature (conversions, hashing, the batch's
bookkeeping) still holds it, and a thread would run at the loop's priority. Here one worker
process per event loop signs whole batches, below the loop's priority. The loop talks to it
over a pipe it watches itself (add_reader): no thread of ours in the server process, so nothing
else there competes for the GIL (a ProcessPoolExecutor's two helper threads did, and cost a
quarter of the loop's time under load).

The worker imports this module and safespace.privacy.blind, nothing of the app (spawn). Keys are
unsealed in the server (microseconds) and sent with each batch; the worker parses each key once
and keeps it by key id, as token_keys does, and signs with blind.blind_sign (RFC 9474 BlindSign,
with its s^e = m check). A process that runs one event loop after another (a command's
asyncio.run calls, the test suite) keeps one worker: a loop that finds the worker of a closed
loop with nothing in flight takes it over. The worker ends when the pipe closes: when the
server process ends however it ends (uvicorn re-raises SIGTERM, so clean-up at exit never runs)
or its signer is closed. If the worker dies, the batches in it fail and the next batch starts a
new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import uuid
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, cast

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from safespace.privacy import blind
from safespace.privacy.crypto import Keyring, associated_data
from safespace.privacy.token_keys import from_b64url

Job = tuple[uuid.UUID, bytes, bytes]  # (key id, sealed private key, blinded message)


class Refused(Exception):
    """blind_sign refused the blinded message; `reason` is its words (the caller translates around them)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SignerGone(Exception):
    """The signing process ended (killed, out of memory) before it answered."""


class Signer:
    """The signing process of one event loop, and the requests it has not answered yet (in order)."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, theirs = context.Pipe()
        self.process = context.Process(target=_serve, args=(theirs,), name="safespace-signer", daemon=True)
        self.process.start()
        theirs.close()
        self._loop = asyncio.get_running_loop()
        self._waiting: deque[asyncio.Future] = deque()
        self.gone = False
        self._loop.add_reader(self._conn.fileno(), self._answered)
        # A signer that is dropped takes its worker with it: the pipe closes, the worker ends.
        weakref.finalize(self, self._conn.close)

    def take_over(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Serve `loop` from now on, if this signer's own loop is closed and nothing is in flight."""
        if self.gone or self._waiting or not self._loop.is_closed():
            return False
        # A closed loop has let go of its selector, and with it of the reader.
        self._loop = loop
        loop.add_reader(self._conn.fileno(), self._answered)
        return True

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """`function(*args)` in the signing process (a module-level function: it is sent by name)."""
        future = self._loop.create_future()
        self._waiting.append(future)
        try:
            # A batch is a few kilobytes and at most two are on their way: the socket's buffer takes it at once.
            self._conn.send((function, args))
        except OSError:
            self._end()
        return await future

    def _answered(self) -> None:
        try:
            failed, outcome = self._conn.recv()
        except (EOFError, OSError):
            self._end()
            return
        future = self._waiting.popleft()
        if not future.done():
            future.set_exception(outcome) if failed else future.set_result(outcome)

    def _end(self) -> None:
        if self.gone:
            return
        self.gone = True
        self._loop.remove_reader(self._conn.fileno())
        self._conn.close()
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(SignerGone("the signing process ended; try again"))

    def close(self) -> None:
        self._end()
        self.process.join(timeout=5)


# The signers of this process by their loop: one, unless loops run at once in several threads.
_signers: dict[asyncio.AbstractEventLoop, Signer] = {}


def signer() -> Signer:
    """This event loop's signer: the one of a closed loop taken over, or one started on first use
    (or at app start-up: IssuanceQueue.start)."""
    loop = asyncio.get_running_loop()
    current = _signers.get(loop)
    if current is not None and not current.gone:
        return current
    current = None
    for old_loop, old in list(_signers.items()):
        if old.gone or old_loop.is_closed():
            del _signers[old_loop]  # dropped, unless taken over: a closed loop's signer with work in flight ends
            if current is None and old.take_over(loop):
                current = old
    if current is None:
        current = Signer()
    _signers[loop] = current
    return current


async def sign_all(keyring: Keyring, table: str, jobs: list[Job]) -> list[bytes | Refused]:
    """BlindSign each job's message with its key in the signing process: its signature, or Refused
    for a message blind_sign refuses. Each key of the batch is unsealed here and sent along."""
    keys = {key_id: from_b64url(keyring.open(sealed, associated_data(table, "private_sealed", key_id)), "key") for key_id, sealed, _m in jobs}
    outcomes = await signer().run(_sign_all, table, keys, [(key_id, blinded_msg) for key_id, _s, blinded_msg in jobs])
    return [Refused(outcome) if isinstance(outcome, str) else outcome for outcome in outcomes]


# --- in the worker process ---------------------------------------------------------------------


def _serve(conn: Connection) -> None:
    # The lowest priority: when the cores are all busy the event loop gets one first, so pages stay
    # quick during a burst of issuances, and the signer takes what is left. At nice 10 two busy
    # signers still raised an idle server's /healthz p99 from 0.9 to 3-4 ms on two cores; at 19
    # they did not.
    with contextlib.suppress(OSError):
        os.nice(19)
    while True:
        try:
            function, args = conn.recv()
        except (EOFError, OSError):  # the server process or its loop is gone
            return
        try:
            answer = (False, function(*args))
        except Exception as exc:  # noqa: BLE001 - sent back to the caller, who raises it
            answer = (True, exc)
        conn.send(answer)


# Parsed private keys by (table, key id), least recently used first; as token_keys._PARSED_KEYS.
_PARSED: OrderedDict[tuple[str, uuid.UUID], rsa.RSAPrivateKey] = OrderedDict()
_PARSED_MAX = 256
_parses = 0


def _private_key(table: str, key_id: uuid.UUID, pkcs8: bytes) -> rsa.RSAPrivateKey:
    global _parses
    if (private := _PARSED.get((table, key_id))) is not None:
        _PARSED.move_to_end((table, key_id))
        return private
    # No RSA validation: the service generated this key and AES-GCM under its own keyring authenticated it.
    private = cast(rsa.RSAPrivateKey, serialization.load_der_private_key(pkcs8, None, unsafe_skip_rsa_key_validation=True))
    _parses += 1
    _PARSED[(table, key_id)] = private
    if len(_PARSED) > _PARSED_MAX:
        _PARSED.popitem(last=False)
    return private


def _sign_all(table: str, keys: dict[uuid.UUID, bytes], jobs: list[tuple[uuid.UUID, bytes]]) -> list[bytes | str]:
    outcomes: list[bytes | str] = []
    for key_id, blinded_msg in jobs:
        try:
            outcomes.append(blind.blind_sign(_private_key(table, key_id, keys[key_id]), blinded_msg))
        except blind.BlindSignatureError as exc:
            outcomes.append(str(exc))
    return outcomes


def parses() -> int:
    """Keys parsed so far in this process (tests run it in the worker: `await signer().run(parses)`)."""
    return _parses
