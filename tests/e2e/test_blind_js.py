"""The browser's half of RFC 9474 (safespace/static/blind.js) run in Chromium against the RFC's
Appendix A vectors, under the app's own Content-Security-Policy. Pages and scripts are served
from memory by Playwright's router: no server, no network."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from safespace.app import CSP, STATIC
from tests.conftest import IN_CI

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
VECTORS_FILE = Path(__file__).parents[1] / "safespace" / "privacy" / "vectors" / "rfc9474.json"
VECTORS = json.loads(VECTORS_FILE.read_text())
ORIGIN = "https://safespace.test"  # WebCrypto needs a secure context, as in production
INSECURE_ORIGIN = "http://safespace.test"
pytestmark = pytest.mark.e2e


def sri(path: Path) -> str:
    """The Subresource Integrity value a page puts on <script integrity=...>."""
    return "sha384-" + base64.b64encode(hashlib.sha384(path.read_bytes()).digest()).decode()


def page_html(integrity: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>blind.js</title>'
        f'<script type="module" src="/static/blind.js" integrity="{integrity}"></script>'
        "</head><body><main>blind.js under test</main></body></html>"
    )


def serve(route) -> None:
    """Our origin from memory, with the app's CSP; anything else is refused (no network)."""
    url = route.request.url
    origin = next((o for o in (ORIGIN, INSECURE_ORIGIN) if url.startswith(o + "/")), None)
    path = url.removeprefix(origin or "")
    headers = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}
    if origin is None:
        route.abort()
    elif path.startswith("/static/") and (STATIC / path.removeprefix("/static/")).is_file():
        body = (STATIC / path.removeprefix("/static/")).read_bytes()
        route.fulfill(status=200, body=body, headers={**headers, "Content-Type": "text/javascript"})
    elif path == "/":
        route.fulfill(status=200, body=page_html(sri(STATIC / "blind.js")), headers=headers, content_type="text/html")
    elif path == "/wrong-integrity":
        wrong = "sha384-" + base64.b64encode(hashlib.sha384(b"not blind.js").digest()).decode()
        route.fulfill(status=200, body=page_html(wrong), headers=headers, content_type="text/html")
    else:
        route.fulfill(status=404, body="not found", headers=headers)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail("Chromium is missing: .ci/run installs Debian's chromium package.")
        pytest.skip("Chromium is not installed (apt-get install -y chromium); browser test skipped")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()


@pytest.fixture
def context(browser):
    context = browser.new_context()
    context.route("**/*", serve)
    yield context
    context.close()


@pytest.fixture
def page(context):
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(ORIGIN + "/")
    yield page
    assert errors == [], errors


def b64url(hex_value: str) -> str:
    return base64.urlsafe_b64encode(bytes.fromhex(hex_value)).rstrip(b"=").decode()


def jwk(vector: dict[str, str]) -> dict[str, str]:
    return {"kty": "RSA", "n": b64url(vector["n"]), "e": b64url(vector["e"])}


def salt_length(vector: dict[str, str]) -> int:
    return len(vector["salt"]) // 2  # 48 for the PSS variants, 0 for PSSZERO


# Each call imports the module the way a page does: same origin, allowed by script-src 'self'.
BLIND_AND_FINALIZE = """async ({ jwk, v, saltLength }) => {
  const b = await import("/static/blind.js");
  const h = b.hexToBytes;
  const blinded = await b.blind(jwk, h(v.prepared_msg), { salt: h(v.salt), inv: h(v.inv), saltLength });
  const sig = await b.finalize(jwk, h(v.prepared_msg), h(v.blind_sig), blinded.inv, { saltLength });
  return { blindedMsg: b.bytesToHex(blinded.blindedMsg), inv: b.bytesToHex(blinded.inv), sig: b.bytesToHex(sig) };
}"""

PREPARE = """async ({ msg, randomized }) => {
  const b = await import("/static/blind.js");
  const one = await b.prepare(b.hexToBytes(msg), randomized);
  const two = await b.prepare(b.hexToBytes(msg), randomized);
  return [b.bytesToHex(one), b.bytesToHex(two)];
}"""

FINALIZE_ERROR = """async ({ jwk, msg, blindSig, inv, saltLength }) => {
  const b = await import("/static/blind.js");
  const h = b.hexToBytes;
  try {
    await b.finalize(jwk, h(msg), h(blindSig), h(inv), { saltLength });
    return null;
  } catch (error) {
    return error.message;
  }
}"""


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_blind_and_finalize_match_rfc9474_vector(page, vector: dict[str, str]) -> None:
    assert vector["prepared_msg"] == vector["msg_prefix"] + vector["msg"]
    out = page.evaluate(BLIND_AND_FINALIZE, {"jwk": jwk(vector), "v": vector, "saltLength": salt_length(vector)})
    assert out["blindedMsg"] == vector["blinded_msg"]
    assert out["inv"] == vector["inv"]
    assert out["sig"] == vector["sig"]  # finalize returns only after WebCrypto's RSA-PSS verify passed


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_prepare_adds_32_random_bytes_only_when_randomized(page, vector: dict[str, str]) -> None:
    randomized = vector["msg_prefix"] != ""
    assert randomized == vector["name"].endswith("-Randomized")
    one, two = page.evaluate(PREPARE, {"msg": vector["msg"], "randomized": randomized})
    if randomized:
        assert len(one) == len(two) == 2 * 32 + len(vector["msg"])
        assert one[64:] == two[64:] == vector["msg"]
        assert one[:64] != two[:64]  # a fresh prefix each time: the server never saw this message
    else:
        assert one == two == vector["msg"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_finalize_refuses_a_tampered_blind_signature(page, vector: dict[str, str]) -> None:
    tampered = bytearray.fromhex(vector["blind_sig"])
    tampered[-1] ^= 0x01
    message = page.evaluate(
        FINALIZE_ERROR,
        {
            "jwk": jwk(vector),
            "msg": vector["prepared_msg"],
            "blindSig": tampered.hex(),
            "inv": vector["inv"],
            "saltLength": salt_length(vector),
        },
    )
    assert message is not None and "does not verify" in message


def test_finalize_refuses_a_signature_for_another_message(page) -> None:
    vector = VECTORS[0]
    other = bytearray.fromhex(vector["prepared_msg"])
    other[0] ^= 0x01
    message = page.evaluate(
        FINALIZE_ERROR,
        {
            "jwk": jwk(vector),
            "msg": other.hex(),
            "blindSig": vector["blind_sig"],
            "inv": vector["inv"],
            "saltLength": salt_length(vector),
        },
    )
    assert message is not None and "does not verify" in message


def test_random_blind_signed_by_server_key_verifies_with_cryptography(page) -> None:
    """The product path: random prefix, salt and r in the browser; the raw RSA private operation
    here; the final signature checked the way the redeem route checks it (salt length 48)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.public_key().public_numbers()
    n_hex = f"{numbers.n:0512x}"
    public = {"kty": "RSA", "n": b64url(n_hex), "e": b64url(f"{numbers.e:06x}")}
    blinded = page.evaluate(
        """async ({ jwk }) => {
          const b = await import("/static/blind.js");
          const msg = await b.prepare(new TextEncoder().encode("round 7, team 2"));
          const { blindedMsg, inv } = await b.blind(jwk, msg);
          return { msg: b.bytesToHex(msg), blindedMsg: b.bytesToHex(blindedMsg), inv: b.bytesToHex(inv) };
        }""",
        {"jwk": public},
    )
    d = key.private_numbers().d
    blind_sig = f"{pow(int(blinded['blindedMsg'], 16), d, numbers.n):0512x}"
    sig = page.evaluate(
        """async ({ jwk, msg, blindSig, inv }) => {
          const b = await import("/static/blind.js");
          const h = b.hexToBytes;
          return b.bytesToHex(await b.finalize(jwk, h(msg), h(blindSig), h(inv)));
        }""",
        {"jwk": public, "msg": blinded["msg"], "blindSig": blind_sig, "inv": blinded["inv"]},
    )
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
    key.public_key().verify(bytes.fromhex(sig), bytes.fromhex(blinded["msg"]), pss, hashes.SHA384())


def test_base64url_round_trips(page) -> None:
    out = page.evaluate(
        """async () => {
          const b = await import("/static/blind.js");
          const all = Uint8Array.from({ length: 256 }, (_, i) => i);
          const results = [];
          for (let len = 0; len < 6; len++) results.push(b.bytesToB64url(all.subarray(250, 250 + len)));
          const back = b.b64urlToBytes(b.bytesToB64url(all));
          return { results, same: back.length === 256 && back.every((x, i) => x === i) };
        }"""
    )
    assert out["same"]
    assert out["results"] == [b64url(bytes(range(250, 250 + k)).hex()) for k in range(6)]


def test_blind_says_https_is_needed_where_webcrypto_is_missing(context) -> None:
    page = context.new_page()
    page.goto(INSECURE_ORIGIN + "/")
    numbers = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_numbers()
    message = page.evaluate(
        """async ({ jwk }) => {
          const b = await import("/static/blind.js");
          try {
            await b.blind(jwk, new Uint8Array(1));
          } catch (error) {
            return error.message;
          }
          return null;
        }""",
        {"jwk": _public(numbers.n, numbers.e)},
    )
    assert message is not None and "HTTPS" in message


def test_token_survives_closing_the_tab_until_dropped(context, page) -> None:
    token = {"roundId": "r-7", "keyId": "k1", "msg": "AAEC", "sig": "AwQF"}
    page.evaluate(
        """async (token) => {
          const t = await import("/static/tokens.js");
          t.saveToken("r-7", token);
        }""",
        token,
    )
    page.close()
    later = context.new_page()
    later.goto(ORIGIN + "/")
    load = """async (roundId) => (await import("/static/tokens.js")).loadToken(roundId)"""
    assert later.evaluate(load, "r-7") == token
    assert later.evaluate(load, "r-8") is None
    later.evaluate("""async () => (await import("/static/tokens.js")).dropToken("r-7")""")
    assert later.evaluate(load, "r-7") is None


def test_token_store_refuses_a_token_for_another_round(page) -> None:
    message = page.evaluate(
        """async () => {
          const t = await import("/static/tokens.js");
          try {
            t.saveToken("r-1", { roundId: "r-2", keyId: "k", msg: "AA", sig: "AA" });
          } catch (error) {
            return error.message;
          }
          return null;
        }"""
    )
    assert message is not None and "another round" in message


def test_page_loads_blind_js_only_with_its_integrity_hash(context) -> None:
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(ORIGIN + "/")
    page.wait_for_load_state("load")
    assert errors == []
    page.goto(ORIGIN + "/wrong-integrity")
    page.wait_for_load_state("load")
    assert any("integrity" in error for error in errors), errors


def _public(n: int, e: int) -> dict[str, str]:
    as_hex = lambda value: f"{value:x}".zfill(len(f"{value:x}") + len(f"{value:x}") % 2)  # noqa: E731
    return {"kty": "RSA", "n": b64url(as_hex(n)), "e": b64url(as_hex(e))}


REFUSAL = """async ({ jwk }) => {
  const b = await import("/static/blind.js");
  const msg = await b.prepare(new TextEncoder().encode("a token"));
  const outcome = {};
  for (const [name, step] of [["blind", () => b.blind(jwk, msg)], ["fingerprint", () => b.fingerprint(jwk)]]) {
    try {
      await step();
      outcome[name] = null;
    } catch (error) {
      outcome[name] = [error instanceof b.KeyRefused, error.message];
    }
  }
  return outcome;
}"""


def test_short_keys_and_odd_exponents_are_refused_before_blinding(page) -> None:
    """A 1024-bit key would make tokens forgeable; an exponent other than 65537 (3, or 1, which is no
    signature at all) is not a key the server makes. The browser refuses both, with a message."""
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key().public_numbers()
    good = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_numbers()
    cases = {
        "1024 bits": (_public(short.n, 65537), "at least 2048"),
        "e = 3": (_public(good.n, 3), "only 65537"),
        "e = 1": (_public(good.n, 1), "only 65537"),
    }
    for name, (jwk, says) in cases.items():
        outcome = page.evaluate(REFUSAL, {"jwk": jwk})
        for step in ("blind", "fingerprint"):
            assert outcome[step] is not None, f"{name}: {step} accepted the key"
            refused, message = outcome[step]
            assert refused and says in message and "Nothing was sent" in message, (name, step, message)
    accepted = page.evaluate(REFUSAL, {"jwk": _public(good.n, 65537)})
    assert accepted == {"blind": None, "fingerprint": None}


def test_the_browser_computes_the_servers_fingerprint(page) -> None:
    """The fingerprint members compare is computed from the key in the browser, the same way the
    server prints it (privacy.blind.fingerprint), so a server cannot show one and use another."""
    from safespace.privacy import blind as server

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    numbers = key.public_numbers()
    computed = page.evaluate(
        """async ({ jwk }) => (await import("/static/blind.js")).fingerprint(jwk)""", {"jwk": _public(numbers.n, numbers.e)}
    )
    assert computed == server.fingerprint(key)
