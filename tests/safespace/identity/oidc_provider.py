"""A real OpenID Connect provider for the tests (oidc-provider-mock, its own process), and a
forwarding proxy in front of it that can play the attacker on the wire: it can break the ID
token's signature, or have the provider mint the token for another application."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx

from tests.conftest import free_port

CLIENT_ID = "safespace-test"
OTHER_CLIENT = "another-application"


@contextmanager
def provider_process(*args: str) -> Iterator[str]:
    """oidc-provider-mock started on a free port; yields its address once it answers discovery."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "oidc_provider_mock", "--port", str(port), "--require-nonce", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(url + "/.well-known/openid-configuration", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                raise RuntimeError("oidc-provider-mock stopped at start-up")
            time.sleep(0.05)
        else:
            raise RuntimeError("oidc-provider-mock did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


class Tampering:
    """What the proxy does to the traffic now: None (forward as is), "signature" or "audience";
    and the token requests it saw (form bodies), for tests to read."""

    def __init__(self) -> None:
        self.mode: str | None = None
        self.token_requests: list[dict[str, str]] = []


def _swap_client(value: str) -> str:
    return value.replace(CLIENT_ID, OTHER_CLIENT)


def _break_signature(body: bytes) -> bytes:
    token = json.loads(body)
    header, payload, signature = token["id_token"].split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[0] ^= 0xFF
    token["id_token"] = ".".join([header, payload, base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()])
    return json.dumps(token).encode()


def _handler(upstream: str, tampering: Tampering) -> type[BaseHTTPRequestHandler]:
    class Forward(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("content-length", "accept-encoding")}
            path = self.path
            if tampering.mode == "audience":
                parts = urlsplit(path)
                path = parts.path + ("?" + urlencode([(k, _swap_client(v)) for k, v in parse_qsl(parts.query)]) if parts.query else "")
                auth = headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    pair = base64.b64decode(auth[6:]).decode()
                    headers["Authorization"] = "Basic " + base64.b64encode(_swap_client(pair).encode()).decode()
                body = _swap_client(body.decode()).encode()
            if self.path.startswith("/oauth2/token"):
                tampering.token_requests.append(dict(parse_qsl(body.decode())))
            answer = httpx.request(self.command, upstream + path, headers=headers, content=body, follow_redirects=False)
            content = answer.content
            if tampering.mode == "signature" and self.path.startswith("/oauth2/token") and answer.status_code == 200:
                content = _break_signature(content)
            self.send_response(answer.status_code)
            for key, value in answer.headers.items():
                if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding", "date", "server"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = do_PUT = _forward

    return Forward


@contextmanager
def proxy_to(upstream: str) -> Iterator[tuple[str, Tampering]]:
    """A proxy on a free port; the Host header goes through unchanged, so the provider names the
    proxy as its issuer and every endpoint, as a provider behind a load balancer does."""
    tampering = Tampering()
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _handler(upstream, tampering))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tampering
    finally:
        server.shutdown()
        server.server_close()
