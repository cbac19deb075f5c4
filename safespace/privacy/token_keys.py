"""Keys for blind-signature tokens (RFC 9474), shared by pulse rounds and stories.

A key's private half is sealed with the installation's keyring (AES-GCM, associated data naming
the table, column and row); the public half is published as a JWK with a short fingerprint.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass

import anyio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from safespace.i18n import gettext as _
from safespace.privacy import blind
from safespace.privacy.crypto import Keyring, associated_data


class TokenRefused(Exception):
    """A token or blinded message cannot be used: the message says why, in words a member can act on."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


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


def sign(keyring: Keyring, table: str, key_id: uuid.UUID, private_sealed: bytes, blinded_msg: bytes) -> bytes:
    """BlindSign with a sealed key; a refused message raises TokenRefused (nothing is written here)."""
    pkcs8 = from_b64url(keyring.open(private_sealed, _aad(table, key_id)), "key")
    private = serialization.load_der_private_key(pkcs8, password=None)
    try:
        return blind.blind_sign(private, blinded_msg)  # type: ignore[arg-type]
    except blind.BlindSignatureError as exc:
        raise TokenRefused(_("The blinded token was refused: %(reason)s.", reason=str(exc))) from None


def check(public_der: bytes, msg: str, sig: str) -> bytes:
    """Verify a redeemed token; returns its hash for the spent table."""
    message = from_b64url(msg, "token message")
    try:
        blind.verify(public_key(public_der), message, from_b64url(sig, "signature"))
    except blind.BlindSignatureError:
        raise TokenRefused(_("This token's signature does not verify: it was changed, or signed with another key.")) from None
    return hashlib.sha256(message).digest()
