"""RSA blind signatures as RFC 9474 specifies them, for tokens the server signs but cannot recognise.

The variant in use is RSABSSA-SHA384-PSS-Randomized (salt length 48, a 32-byte random prefix on the
message); PSSZERO (salt length 0) and Deterministic (no prefix) are reachable through `salt_length`
and `prepare(..., randomized=False)` so that all four RFC test vectors run.

Server side: generate_key, public_jwk, fingerprint, blind_sign, verify.
Client side: prepare, blind, finalize; the browser module follows these functions step by step.

Nothing here is more than the RFC says: its Blind/BlindSign/Finalize arithmetic, EMSA-PSS encoding
exactly as RFC 8017 section 9.1.1 defines it, and cryptography's RSASSA-PSS verify for Verify.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import logging
import math
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

try:
    import gmpy2
except ImportError:  # _arithmetic falls back to pow and logs one warning
    gmpy2 = None

log = logging.getLogger(__name__)

PUBLIC_EXPONENT = 65537
MIN_KEY_BITS = 2048
SALT_LENGTH = 48  # RSABSSA-SHA384-PSS: the salt is as long as the SHA-384 digest
PREFIX_LENGTH = 32  # Randomized variants: 32 random bytes before the message
_HASH_LENGTH = 48
_warned_no_gmpy2 = False


class BlindSignatureError(ValueError):
    """A token operation failed; the message says which input was wrong and what to do."""


# --- keys -----------------------------------------------------------------------------------------


def generate_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    if bits < MIN_KEY_BITS:
        raise BlindSignatureError(f"token keys must be at least {MIN_KEY_BITS} bits; got {bits}")
    return rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=bits)


def _b64url(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def public_jwk(public_key: rsa.RSAPublicKey) -> dict[str, str]:
    """The public key as a JWK (RFC 7518 section 6.3.1), ready for WebCrypto's importKey."""
    numbers = public_key.public_numbers()
    return {"kty": "RSA", "alg": "PS384", "n": _b64url(numbers.n), "e": _b64url(numbers.e)}


def fingerprint(public_key: rsa.RSAPublicKey) -> str:
    """First 64 bits of SHA-256 over the DER SubjectPublicKeyInfo, as four groups members can compare."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    head = _sha(hashes.SHA256(), der)[:8].hex()
    return "-".join(head[i : i + 4] for i in range(0, 16, 4))


# --- RFC 8017 pieces the RFC 9474 Blind step needs ------------------------------------------------


def _sha(algorithm: hashes.HashAlgorithm, *parts: bytes) -> bytes:
    digest = hashes.Hash(algorithm)
    for part in parts:
        digest.update(part)
    return digest.finalize()


def _mgf1_sha384(seed: bytes, length: int) -> bytes:
    """MGF1 (RFC 8017 appendix B.2.1) with SHA-384."""
    blocks = (length + _HASH_LENGTH - 1) // _HASH_LENGTH
    return b"".join(_sha(hashes.SHA384(), seed, counter.to_bytes(4, "big")) for counter in range(blocks))[:length]


def _emsa_pss_encode(msg: bytes, em_bits: int, salt: bytes) -> bytes:
    """EMSA-PSS-ENCODE (RFC 8017 section 9.1.1) with SHA-384 and MGF1-SHA-384, salt given."""
    em_len = (em_bits + 7) // 8
    if em_len < _HASH_LENGTH + len(salt) + 2:
        raise BlindSignatureError("encoding error: the key is too small for this salt length")
    m_hash = _sha(hashes.SHA384(), msg)
    h = _sha(hashes.SHA384(), b"\x00" * 8, m_hash, salt)
    db = b"\x00" * (em_len - len(salt) - _HASH_LENGTH - 2) + b"\x01" + salt
    masked = int.from_bytes(db, "big") ^ int.from_bytes(_mgf1_sha384(h, len(db)), "big")
    masked &= (1 << (8 * len(db) - (8 * em_len - em_bits))) - 1  # clear the leftmost 8*emLen - emBits bits
    return masked.to_bytes(len(db), "big") + h + b"\xbc"


def _modulus_length(n: int) -> int:
    return (n.bit_length() + 7) // 8


# --- client side ----------------------------------------------------------------------------------


def prepare(msg: bytes, randomized: bool = True) -> bytes:
    """RFC 9474 section 4.1: 32 random bytes || msg (Randomized variants), or msg unchanged."""
    return os.urandom(PREFIX_LENGTH) + msg if randomized else msg


def blind(
    public_key: rsa.RSAPublicKey,
    msg: bytes,
    salt: bytes | None = None,
    r: int | None = None,
    salt_length: int = SALT_LENGTH,
) -> tuple[bytes, bytes]:
    """RFC 9474 section 4.2 Blind: returns (blinded_msg, inv), both as long as the modulus.

    `msg` is the prepared message; `salt` and `r` are drawn here unless a test vector supplies them.
    """
    numbers = public_key.public_numbers()
    n, e = numbers.n, numbers.e
    if salt is None:
        salt = os.urandom(salt_length)
    elif len(salt) != salt_length:
        raise BlindSignatureError(f"salt must be {salt_length} bytes for this variant; got {len(salt)}")
    # RSASSA-PSS encodes to modBits - 1 bits (RFC 8017 section 8.1.1); the RFC 9474 vectors agree.
    m = int.from_bytes(_emsa_pss_encode(msg, n.bit_length() - 1, salt), "big")
    if math.gcd(m, n) != 1:
        raise BlindSignatureError("invalid input: the encoded message shares a factor with the modulus")
    if r is None:
        r = secrets.randbelow(n - 1) + 1
        while math.gcd(r, n) != 1:  # pragma: no cover - happens with probability about 2^-1023
            r = secrets.randbelow(n - 1) + 1
    elif not 0 < r < n or math.gcd(r, n) != 1:
        raise BlindSignatureError("blinding factor r must be between 1 and n - 1 and invertible modulo n")
    inv = pow(r, -1, n)
    blinded = m * pow(r, e, n) % n
    size = _modulus_length(n)
    return blinded.to_bytes(size, "big"), inv.to_bytes(size, "big")


def finalize(
    public_key: rsa.RSAPublicKey, msg: bytes, blind_sig: bytes, inv: bytes, salt_length: int = SALT_LENGTH
) -> bytes:
    """RFC 9474 section 4.4 Finalize: unblind, then verify before returning the signature."""
    n = public_key.public_numbers().n
    size = _modulus_length(n)
    if len(blind_sig) != size:
        raise BlindSignatureError(f"blind signature must be {size} bytes for this key; got {len(blind_sig)}")
    if len(inv) != size:
        raise BlindSignatureError(f"inverse must be {size} bytes for this key; got {len(inv)}")
    s = int.from_bytes(blind_sig, "big") * int.from_bytes(inv, "big") % n
    sig = s.to_bytes(size, "big")
    verify(public_key, msg, sig, salt_length)
    return sig


def verify(public_key: rsa.RSAPublicKey, msg: bytes, sig: bytes, salt_length: int = SALT_LENGTH) -> None:
    """RFC 9474 section 4.5: RSASSA-PSS-VERIFY with SHA-384, MGF1-SHA-384 and the salt length pinned."""
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=salt_length)
    try:
        public_key.verify(sig, msg, pss, hashes.SHA384())
    except InvalidSignature:
        raise BlindSignatureError(
            "signature does not verify: the message was changed, or it was signed with another key"
        ) from None


# --- server side ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SigningNumbers:
    n: int
    e: int
    p: int
    q: int
    dmp1: int
    dmq1: int
    iqmp: int
    size: int


@functools.lru_cache(maxsize=64)
def _signing_numbers(private_key: rsa.RSAPrivateKey, as_mpz: bool) -> _SigningNumbers:
    """The CRT numbers of one key, converted once: one key signs a whole round's tokens (64 keys kept)."""
    pn = private_key.private_numbers()
    num = gmpy2.mpz if as_mpz else int
    return _SigningNumbers(
        n=num(pn.public_numbers.n),
        e=num(pn.public_numbers.e),
        p=num(pn.p),
        q=num(pn.q),
        dmp1=num(pn.dmp1),
        dmq1=num(pn.dmq1),
        iqmp=num(pn.iqmp),
        size=_modulus_length(pn.public_numbers.n),
    )


def _arithmetic() -> tuple[Callable[..., int], Callable[..., int], Callable[[int, int], int], bool]:
    """(constant-time powmod for d, powmod for the public e, inverse, mpz?): gmpy2's when installed."""
    global _warned_no_gmpy2
    if gmpy2 is not None:
        return gmpy2.powmod_sec, gmpy2.powmod, gmpy2.invert, True
    if not _warned_no_gmpy2:
        _warned_no_gmpy2 = True
        log.warning(
            "gmpy2 is not installed: blind signatures use Python's pow, which is slower and not "
            "constant-time; install gmpy2 (pip install gmpy2) on the server"
        )
    return pow, pow, lambda x, n: pow(x, -1, n), False


def _crt(k: _SigningNumbers, c: int, powmod: Callable[..., int]) -> int:
    """c^d mod n through the two half-size exponentiations and Garner's recombination."""
    s1 = powmod(c % k.p, k.dmp1, k.p)
    s2 = powmod(c % k.q, k.dmq1, k.q)
    return s2 + (k.iqmp * (s1 - s2) % k.p) * k.q


def blind_sign(private_key: rsa.RSAPrivateKey, blinded_msg: bytes) -> bytes:
    """RFC 9474 section 4.3 BlindSign: RSASP1 on the blinded message, checked before it leaves."""
    powmod_sec, powmod, invert, as_mpz = _arithmetic()
    k = _signing_numbers(private_key, as_mpz)
    if len(blinded_msg) != k.size:
        raise BlindSignatureError(f"blinded message must be {k.size} bytes for this key; got {len(blinded_msg)}")
    m = int.from_bytes(blinded_msg, "big")
    if not 0 < m < k.n:
        raise BlindSignatureError("blinded message out of range: it must be a number between 1 and n - 1")
    if as_mpz:
        m = gmpy2.mpz(m)
    # GMP's exponentiations run without the GIL: a signing thread then takes no turns from the
    # event loop (holding it, each signature would stall every request waiting on the loop).
    with gmpy2.context(allow_release_gil=True) if as_mpz else contextlib.nullcontext():
        return _signature(k, m, powmod_sec, powmod, invert)


def _signature(
    k: _SigningNumbers, m: int, powmod_sec: Callable[..., int], powmod: Callable[..., int], invert: Callable[[int, int], int]
) -> bytes:
    # Base blinding: the exponentiation sees m * r^e for a fresh r, never the client's value.
    r = secrets.randbelow(int(k.n) - 1) + 1
    t = secrets.randbelow(int(k.n) - 1) + 1  # invert r*t, not r, so the gcd's timing says nothing of r
    try:
        r_inv = invert(r * t % k.n, k.n) * t % k.n
    except (ValueError, ZeroDivisionError):  # pragma: no cover - r or t shares a factor with n: ~2^-1023
        raise BlindSignatureError("signing failure: could not draw a blinding factor; try again") from None
    # r^e uses the public exponent only, and r is fresh and used once: the variable-time powmod will do.
    s = _crt(k, m * powmod(r, k.e, k.n) % k.n, powmod_sec) * r_inv % k.n
    # RFC 9474: a faulty CRT result would leak a factor of n; check it and return nothing if wrong.
    if powmod(s, k.e, k.n) != m:
        raise BlindSignatureError("signing failure: the signature did not pass its check; nothing was returned")
    return int(s).to_bytes(k.size, "big")
