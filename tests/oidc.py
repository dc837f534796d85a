"""An OIDC token endpoint on loopback for the OAUTHBEARER tests: answers a
client-credentials grant with a JWT-shaped (unsigned) access token and records each
request's form and ``Authorization`` header."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _b64(part: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


class TokenEndpoint:
    def __init__(self, lifetime_s: int = 3600) -> None:
        self.requests: list[tuple[dict[str, list[str]], str]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                endpoint.requests.append((form, self.headers.get("Authorization", "")))
                now = int(time.time())
                token = ".".join([_b64({"alg": "none", "typ": "JWT"}),
                                  _b64({"sub": "governor", "iat": now, "exp": now + lifetime_s}),
                                  "c2ln"])
                body = json.dumps({"access_token": token, "token_type": "Bearer",
                                   "expires_in": lifetime_s}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/oauth2/token"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> TokenEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def basic(self, client_id: str, secret: str) -> str:
        """The ``Authorization`` header a client with these credentials sends."""
        return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
