"""RFC 9474 blind signatures: the four Appendix A vectors, and the refusals a token endpoint relies on."""

from __future__ import annotations

import base64
import json
import logging
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from safespace.privacy import blind
from safespace.privacy.blind import BlindSignatureError

VECTORS = json.loads((Path(__file__).with_name("vectors") / "rfc9474.json").read_text())


def _int(vector: dict[str, str], name: str) -> int:
    return int(vector[name], 16)


def _vector_key(vector: dict[str, str]) -> rsa.RSAPrivateKey:
    p, q, d = _int(vector, "p"), _int(vector, "q"), _int(vector, "d")
    public = rsa.RSAPublicNumbers(_int(vector, "e"), _int(vector, "n"))
    return rsa.RSAPrivateNumbers(
        p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q), public
    ).private_key()


def _salt_length(vector: dict[str, str]) -> int:
    return 0 if "PSSZERO" in vector["name"] else blind.SALT_LENGTH


@pytest.fixture(scope="module", params=VECTORS, ids=[v["name"] for v in VECTORS])
def vector(request: pytest.FixtureRequest) -> dict[str, str]:
    return request.param


@pytest.fixture(scope="module")
def vector_key(vector: dict[str, str]) -> rsa.RSAPrivateKey:
    return _vector_key(vector)


@pytest.fixture(scope="module")
def round_key() -> rsa.RSAPrivateKey:
    return blind.generate_key(2048)


@pytest.fixture(scope="module")
def other_round_key() -> rsa.RSAPrivateKey:
    return blind.generate_key(2048)


def test_vector_prepared_message_is_prefix_then_message(vector: dict[str, str]) -> None:
    randomized = vector["name"].endswith("-Randomized")
    assert len(bytes.fromhex(vector["msg_prefix"])) == (blind.PREFIX_LENGTH if randomized else 0)
    assert vector["prepared_msg"] == vector["msg_prefix"] + vector["msg"]
    msg = bytes.fromhex(vector["msg"])
    prepared = blind.prepare(msg, randomized=randomized)
    assert prepared[len(prepared) - len(msg) :] == msg and len(prepared) == len(bytes.fromhex(vector["prepared_msg"]))


def test_blind_matches_the_vector(vector: dict[str, str], vector_key: rsa.RSAPrivateKey) -> None:
    n = _int(vector, "n")
    prepared, salt = bytes.fromhex(vector["prepared_msg"]), bytes.fromhex(vector["salt"])
    assert blind._emsa_pss_encode(prepared, n.bit_length() - 1, salt).hex() == vector["encoded_msg"]
    r = pow(_int(vector, "inv"), -1, n)  # the vectors give inv; Blind draws r = inv^-1
    blinded_msg, inv = blind.blind(vector_key.public_key(), prepared, salt=salt, r=r, salt_length=len(salt))
    assert blinded_msg.hex() == vector["blinded_msg"]
    assert inv.hex() == vector["inv"]


def test_blind_sign_matches_the_vector_despite_base_blinding(
    vector: dict[str, str], vector_key: rsa.RSAPrivateKey
) -> None:
    blinded_msg = bytes.fromhex(vector["blinded_msg"])
    # a fresh blinding factor each call, the same signature every time
    assert blind.blind_sign(vector_key, blinded_msg).hex() == vector["blind_sig"]
    assert blind.blind_sign(vector_key, blinded_msg).hex() == vector["blind_sig"]


def test_finalize_and_verify_match_the_vector(vector: dict[str, str], vector_key: rsa.RSAPrivateKey) -> None:
    public_key, prepared = vector_key.public_key(), bytes.fromhex(vector["prepared_msg"])
    sig = blind.finalize(
        public_key,
        prepared,
        bytes.fromhex(vector["blind_sig"]),
        bytes.fromhex(vector["inv"]),
        salt_length=_salt_length(vector),
    )
    assert sig.hex() == vector["sig"]
    blind.verify(public_key, prepared, sig, salt_length=_salt_length(vector))


def test_vector_signature_does_not_verify_for_a_changed_message(
    vector: dict[str, str], vector_key: rsa.RSAPrivateKey
) -> None:
    tampered = bytearray(bytes.fromhex(vector["prepared_msg"]))
    tampered[-1] ^= 1
    with pytest.raises(BlindSignatureError, match="signature does not verify"):
        blind.verify(vector_key.public_key(), bytes(tampered), bytes.fromhex(vector["sig"]), _salt_length(vector))


def test_token_round_trips_with_a_fresh_2048_bit_key(round_key: rsa.RSAPrivateKey) -> None:
    public_key = round_key.public_key()
    msg = blind.prepare(b"round 7, team 3")
    blinded_msg, inv = blind.blind(public_key, msg)
    assert len(blinded_msg) == len(inv) == 256
    sig = blind.finalize(public_key, msg, blind.blind_sign(round_key, blinded_msg), inv)
    blind.verify(public_key, msg, sig)


def test_tampered_token_message_is_refused(round_key: rsa.RSAPrivateKey) -> None:
    public_key = round_key.public_key()
    msg = blind.prepare(b"token")
    blinded_msg, inv = blind.blind(public_key, msg)
    sig = blind.finalize(public_key, msg, blind.blind_sign(round_key, blinded_msg), inv)
    with pytest.raises(BlindSignatureError, match="signature does not verify"):
        blind.verify(public_key, msg[:-1] + bytes([msg[-1] ^ 1]), sig)


def test_signature_from_another_rounds_key_is_refused(
    round_key: rsa.RSAPrivateKey, other_round_key: rsa.RSAPrivateKey
) -> None:
    msg = blind.prepare(b"token")
    blinded_msg, inv = blind.blind(other_round_key.public_key(), msg)
    sig = blind.finalize(other_round_key.public_key(), msg, blind.blind_sign(other_round_key, blinded_msg), inv)
    with pytest.raises(BlindSignatureError, match="signed with another key"):
        blind.verify(round_key.public_key(), msg, sig)


def test_finalize_refuses_a_blind_signature_from_the_wrong_key(
    round_key: rsa.RSAPrivateKey, other_round_key: rsa.RSAPrivateKey
) -> None:
    msg = blind.prepare(b"token")
    _, inv = blind.blind(round_key.public_key(), msg)
    other_blinded_msg, _ = blind.blind(other_round_key.public_key(), msg)
    other_blind_sig = blind.blind_sign(other_round_key, other_blinded_msg)
    with pytest.raises(BlindSignatureError, match="signature does not verify"):
        blind.finalize(round_key.public_key(), msg, other_blind_sig, inv)


@pytest.mark.parametrize("value", ["n", "n+1", "all ones"])
def test_blinded_message_at_or_above_the_modulus_is_refused(round_key: rsa.RSAPrivateKey, value: str) -> None:
    n = round_key.public_key().public_numbers().n
    number = {"n": n, "n+1": n + 1, "all ones": 2**2048 - 1}[value]
    with pytest.raises(BlindSignatureError, match="blinded message out of range"):
        blind.blind_sign(round_key, number.to_bytes(256, "big"))


def test_blinded_message_zero_is_refused(round_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(BlindSignatureError, match="blinded message out of range"):
        blind.blind_sign(round_key, bytes(256))


def test_blinded_message_of_the_wrong_length_is_refused(round_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(BlindSignatureError, match="must be 256 bytes"):
        blind.blind_sign(round_key, b"\x01" * 255)


def test_faulty_private_operation_returns_nothing(
    round_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong CRT half would let anyone factor n from the output (Boneh-DeMillo-Lipton); it must not leave."""
    blinded_msg, _ = blind.blind(round_key.public_key(), blind.prepare(b"token"))
    real_crt = blind._crt
    monkeypatch.setattr(blind, "_crt", lambda k, c, powmod: real_crt(k, c, powmod) + k.q)
    with pytest.raises(BlindSignatureError, match="signing failure"):
        blind.blind_sign(round_key, blinded_msg)


def test_the_private_exponentiations_let_go_of_the_gil(round_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    """A signing thread must not stall the event loop: GMP runs the secret-exponent powers with the
    GIL released (gmpy2's allow_release_gil, per call), and the caller's context is left as it was."""
    gmpy2 = pytest.importorskip("gmpy2")
    seen: list[bool] = []
    real = gmpy2.powmod_sec

    def recording(*args: object) -> object:
        seen.append(gmpy2.get_context().allow_release_gil)
        return real(*args)

    monkeypatch.setattr(gmpy2, "powmod_sec", recording)
    blinded_msg, inv = blind.blind(round_key.public_key(), msg := blind.prepare(b"token"))
    signature = blind.finalize(round_key.public_key(), msg, blind.blind_sign(round_key, blinded_msg), inv)
    blind.verify(round_key.public_key(), msg, signature)
    assert seen == [True, True]  # the two CRT halves
    assert gmpy2.get_context().allow_release_gil is False


def test_without_gmpy2_signing_still_matches_and_warns_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    vector = VECTORS[0]
    key = _vector_key(vector)
    monkeypatch.setattr(blind, "gmpy2", None)
    monkeypatch.setattr(blind, "_warned_no_gmpy2", False)
    with caplog.at_level(logging.WARNING, logger=blind.__name__):
        for _ in range(2):
            assert blind.blind_sign(key, bytes.fromhex(vector["blinded_msg"])).hex() == vector["blind_sig"]
    warnings = [record for record in caplog.records if record.name == blind.__name__]
    assert len(warnings) == 1 and "gmpy2 is not installed" in warnings[0].getMessage()


def test_blind_refuses_a_salt_of_the_wrong_length(round_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(BlindSignatureError, match="salt must be 48 bytes"):
        blind.blind(round_key.public_key(), b"token", salt=b"\x00" * 32)


def test_blind_refuses_a_blinding_factor_out_of_range(round_key: rsa.RSAPrivateKey) -> None:
    n = round_key.public_key().public_numbers().n
    with pytest.raises(BlindSignatureError, match="blinding factor"):
        blind.blind(round_key.public_key(), b"token", r=n)


def test_keys_below_2048_bits_are_refused() -> None:
    with pytest.raises(BlindSignatureError, match="at least 2048 bits"):
        blind.generate_key(1024)


def test_public_jwk_carries_the_modulus_and_exponent(round_key: rsa.RSAPrivateKey) -> None:
    numbers = round_key.public_key().public_numbers()
    jwk = blind.public_jwk(round_key.public_key())
    assert set(jwk) == {"kty", "alg", "n", "e"}
    assert (jwk["kty"], jwk["alg"], jwk["e"]) == ("RSA", "PS384", "AQAB")
    assert "=" not in jwk["n"]
    raw_n = base64.urlsafe_b64decode(jwk["n"] + "=" * (-len(jwk["n"]) % 4))
    assert int.from_bytes(raw_n, "big") == numbers.n and len(raw_n) == 256


def test_fingerprint_is_short_stable_and_differs_between_keys(
    round_key: rsa.RSAPrivateKey, other_round_key: rsa.RSAPrivateKey
) -> None:
    first = blind.fingerprint(round_key.public_key())
    assert re.fullmatch(r"[0-9a-f]{4}(-[0-9a-f]{4}){3}", first)
    assert blind.fingerprint(round_key.public_key()) == first
    assert blind.fingerprint(other_round_key.public_key()) != first
