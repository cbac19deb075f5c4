"""Keys for blind-signature tokens (RFC 9474), shared by pulse rounds and stories.

A key's private half is sealed with the installation's keyring (AES-GCM, associated data naming
the table, column and row); the public half is published as a JWK with a short fingerprint.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import cast

import anyio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from safespace.i18n import gettext as _
from safespace.privacy import blind
from safespace.privacy.crypto import Keyring, associated_data


class TokenRefused(Exception):
    """A token or blinded message cannot be used: the message says why, in words a member can act on."""

    def __init__(self, message: str, status: int = 400, fresh_token: bool = False) -> None:
        super().__init__(message)
        # fresh_token: its key is gone (never a spent token: what was sent with that one was counted);
        # the browser may take a new token and try again.
        self.message, self.status, self.fresh_token = message, status, fresh_token


# The problem type of a refusal that a new token would mend (static/quiet.js looks for it).
FRESH_TOKEN = "tag:safespace.invalid,2026:fresh-token"


def refusal(exc: TokenRefused, title: str) -> dict:
    """The problem() arguments for a refused token."""
    return {"status": exc.status, "title": title, "detail": exc.message} | ({"type": FRESH_TOKEN} if exc.fresh_token else {})


@dataclass(frozen=True)
class NewKey:
    id: uuid.UUID
    public_der: bytes  # SubjectPublicKeyInfo
    private_sealed: bytes  # PKCS#8, sealed
    fingerprint: str


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def from_b64url(text: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise TokenRefused(_("The %(what)s is not valid base64url.", what=what)) from None


def _aad(table: str, key_id: uuid.UUID) -> bytes:
    return associated_data(table, "private_sealed", key_id)


async def new_key(keyring: Keyring, table: str, bits: int) -> NewKey:
    """A fresh key pair, its private half sealed for its row. Generating an RSA key takes from tens
    of milliseconds to over a second, so it runs in a worker thread, not on the event loop."""
    private = await anyio.to_thread.run_sync(blind.generate_key, bits)
    key_id = uuid.uuid4()
    pkcs8 = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = private.public_key()
    return NewKey(
        id=key_id,
        public_der=public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        private_sealed=keyring.seal(b64url(pkcs8), _aad(table, key_id)),
        fingerprint=blind.fingerprint(public),
    )


def public_key(public_der: bytes) -> rsa.RSAPublicKey:
    return serialization.load_der_public_key(public_der)  # type: ignore[return-value]


def jwk(public_der: bytes) -> dict[str, str]:
    return blind.public_jwk(public_key(public_der))


# Parsed private keys by (table, key id), least recently used first: parsing costs tens of
# milliseconds, and blind._signing_numbers caches per key object, so one object per key is kept.
# A key id never changes its key (`safespace keys rotate` re-seals the same key), so the id suffices.
_PARSED_KEYS: OrderedDict[tuple[str, uuid.UUID], rsa.RSAPrivateKey] = OrderedDict()
_PARSED_KEYS_MAX = 256
# One signing thread at a time. blind_sign lets go of the GIL during GMP's arithmetic, so that
# thread and the event loop run on two cores; a second signer would take the loop's core.
_signer = anyio.CapacityLimiter(1)


def _private_key(keyring: Keyring, table: str, key_id: uuid.UUID, private_sealed: bytes) -> rsa.RSAPrivateKey:
    if (private := _PARSED_KEYS.get((table, key_id))) is not None:
        _PARSED_KEYS.move_to_end((table, key_id))
        return private
    pkcs8 = from_b64url(keyring.open(private_sealed, _aad(table, key_id)), "key")
    # No RSA validation: the service generated this key and AES-GCM under its own keyring authenticated it.
    private = cast(rsa.RSAPrivateKey, serialization.load_der_private_key(pkcs8, None, unsafe_skip_rsa_key_validation=True))
    _PARSED_KEYS[(table, key_id)] = private
    if len(_PARSED_KEYS) > _PARSED_KEYS_MAX:
        _PARSED_KEYS.popitem(last=False)
    return private


def _sign(keyring: Keyring, table: str, key_id: uuid.UUID, private_sealed: bytes, blinded_msg: bytes) -> bytes:
    try:
        return blind.blind_sign(_private_key(keyring, table, key_id, private_sealed), blinded_msg)
    except blind.BlindSignatureError as exc:
        raise TokenRefused(_("The blinded token was refused: %(reason)s.", reason=str(exc))) from None


async def sign(keyring: Keyring, table: str, key_id: uuid.UUID, private_sealed: bytes, blinded_msg: bytes) -> bytes:
    """BlindSign with a sealed key; a refused message raises TokenRefused (nothing is written here).
    The RSA work (and unsealing and parsing the key on first use) runs in the signing thread, so
    the event loop keeps answering other requests meanwhile."""
    return await anyio.to_thread.run_sync(_sign, keyring, table, key_id, private_sealed, blinded_msg, limiter=_signer)


def check(public_der: bytes, msg: str, sig: str) -> bytes:
    """Verify a redeemed token; returns its hash for the spent table."""
    message = from_b64url(msg, "token message")
    try:
        blind.verify(public_key(public_der), message, from_b64url(sig, "signature"))
    except blind.BlindSignatureError:
        raise TokenRefused(_("This token's signature does not verify: it was changed, or signed with another key.")) from None
    return hashlib.sha256(message).digest()
