"""Egress accounting and allow-lists against a real HTTP server on loopback."""

from __future__ import annotations

import http.server
import socket
import threading
import urllib.request
from collections.abc import Iterator

import pytest

import agents
from schemas import Action, CostEvent, Span, Verdict, now_ns, sign_verdict

KEY = b"egress-key"


class _Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def _configure(internal: tuple[str, ...] | None) -> agents.InMemoryExporter:
    memory = agents.InMemoryExporter()
    agents.configure(agents.AgentSettings(verdict_key=KEY, egress=True,
                                          egress_internal=internal), memory)
    return memory


def _post(url: str, size: int) -> int:
    request = urllib.request.Request(url, data=b"x" * size, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(response.status)


def test_outbound_bytes_are_counted_and_priced(server: str) -> None:
    memory = _configure(internal=())  # count loopback too, so the test server counts

    @agents.govern(function="uploader")
    def handler(size: int) -> int:
        return _post(server, size)

    try:
        assert handler(250_000) == 204
        agents.flush()
        [cost] = memory.of_type(CostEvent)
        assert 250_000 <= cost.egress_bytes < 251_000  # body plus request headers
        assert cost.egress_usd == pytest.approx(cost.egress_bytes / 1e9 * 0.09)
        [span] = memory.of_type(Span)
        assert span.attributes["governor.egress.bytes"] == cost.egress_bytes
    finally:
        agents.shutdown(1.0)


def test_destinations_are_named_on_the_span(server: str) -> None:
    memory = _configure(internal=())

    @agents.govern(function="uploader")
    def handler(url: str) -> int:
        return _post(url, 10)

    try:
        handler(server.replace("127.0.0.1", "localhost"))
        agents.flush()
        [span] = memory.of_type(Span)
        assert span.attributes["governor.egress.hosts"] == "localhost"
    finally:
        agents.shutdown(1.0)
    memory = _configure(internal=None)  # loopback internal: not a destination
    try:
        handler(server.replace("127.0.0.1", "localhost"))
        agents.flush()
        [span] = memory.of_type(Span)
        assert "governor.egress.hosts" not in span.attributes
    finally:
        agents.shutdown(1.0)


def test_internal_destinations_are_not_egress(server: str) -> None:
    memory = _configure(internal=None)  # defaults: loopback is internal

    @agents.govern(function="uploader")
    def handler(size: int) -> int:
        return _post(server, size)

    try:
        handler(10_000)
        _post(server, 10_000)  # outside any invocation: not attributed
        agents.flush()
        assert [c.egress_bytes for c in memory.of_type(CostEvent)] == [0]
    finally:
        agents.shutdown(1.0)


def test_a_network_isolation_verdict_blocks_other_destinations(server: str) -> None:
    _configure(internal=None)
    cache = agents.get_runtime().verdicts

    @agents.govern(function="exfil")
    def handler(destination: tuple[str, int]) -> str:
        sock = socket.socket()
        try:
            sock.connect(destination)
        finally:
            sock.close()
        return "connected"

    @agents.govern(function="exfil-dns")
    def resolver(host: str) -> int:
        return len(socket.getaddrinfo(host, 443))

    try:
        host, port = server.removeprefix("http://").strip("/").split(":")
        for name in ("exfil", "exfil-dns"):
            assert cache.offer(sign_verdict(Verdict(
                function=name, action=Action.ISOLATE, sequence=1, reason="exfiltration",
                expires_at_unix_nano=now_ns() + 10**11,
                egress_allow=["*.amazonaws.com", "10.1.0.0/16"]), KEY))
        assert handler((host, int(port))) == "connected"  # loopback stays reachable
        with pytest.raises(agents.EgressBlocked, match=r"10\.2\.3\.4"):
            handler(("10.2.3.4", 443))  # refused before any packet is sent
        with pytest.raises(PermissionError):
            resolver("attacker.example")  # refused before DNS
        agents.flush()
    finally:
        agents.shutdown(1.0)


def test_egress_policy_matching() -> None:
    policy = agents.EgressPolicy(["api.stripe.com", "*.amazonaws.com", "10.0.0.0/8"])
    assert policy.allows_host("api.stripe.com") and policy.allows_host("s3.amazonaws.com")
    assert not policy.allows_host("stripe.com.evil.io")
    assert policy.allows_address("10.9.8.7") and policy.allows_address("127.0.0.1")
    assert not policy.allows_address("8.8.8.8")
    policy.remember(["52.1.2.3"])
    assert policy.allows_address("52.1.2.3")
