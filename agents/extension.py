"""Governor's AWS Lambda extension: the agent's export path outside the function.

Run by the Lambda layer (``extensions/governor`` starts ``python -m agents.extension``)
as an *external extension*, the way the Datadog and OpenTelemetry Lambda extensions
run: a process beside the function's, started before it and stopped after it.

* At start it binds a Unix datagram socket (``GOVERNOR_EXTENSION_SOCKET``, default
  ``/tmp/governor-extension.sock``: ``/tmp`` is shared with the function) and registers
  with the Extensions API for ``INVOKE`` and ``SHUTDOWN``.
* The agent in the function finds the socket and hands each finished invocation's
  encoded span and cost event to it — one datagram each, a few microseconds, no
  waiting — instead of producing to Kafka itself (:class:`ExtensionExporter`).
* A receiver thread produces what arrives to Kafka (``GOVERNOR_KAFKA_BOOTSTRAP``, the
  function's own variables) with an idempotent producer, batching across invocations.
  Between invocations it waits for delivery at most once a second, after the
  function has already answered (billed, never in the caller's latency).
* On ``SHUTDOWN`` it drains the socket and flushes the producer within the deadline
  Lambda gives, then exits: an instance shut down loses nothing it was handed.

A datagram is ``kind`` (``s`` span, ``c`` cost) ``+ function + "\\n" + payload``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from typing import Any

from agents._auth import Sealer
from agents._export import UNBOUNDED, ExportResult
from agents._settings import EXTENSION_SOCKET, AgentSettings
from agents._stats import Stats
from agents._wire import Wire

log = logging.getLogger("governor.extension")

NAME = "governor"
MAX_DATAGRAM = 256 * 1024
FLUSH_EVERY_S = 1.0
KINDS = {"span": b"s", "cost": b"c"}
TOPICS = {b"s": "spans", b"c": "costs"}


class ExtensionExporter:
    """The agent's exporter when the extension is there: one datagram per event."""

    def __init__(self, path: str, stats: Stats) -> None:
        self._path = path
        self._stats = stats
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setblocking(False)

    def export(self, records: Sequence[Wire]) -> ExportResult:
        sent = 0
        for kind, function, value in records:
            frame = KINDS[kind] + function.encode() + b"\n" + value
            try:
                self._socket.sendto(frame, self._path)
                sent += 1
            except BlockingIOError:
                self._stats.add("dropped_extension_busy")
            except OSError:
                self._stats.add("dropped_extension_gone")
        self._stats.add("handed_to_extension", sent)
        return ExportResult.SUCCESS if sent == len(records) else ExportResult.FAILURE

    def room(self) -> int:
        return UNBOUNDED  # a full socket refuses a datagram at once, counted

    def flush(self, timeout_s: float) -> bool:
        return True  # delivery is the extension's

    def shutdown(self, timeout_s: float) -> None:
        self._socket.close()


class Extension:
    """The extension process: socket → Kafka, driven by the Extensions API."""

    def __init__(self, api: str, settings: AgentSettings, path: str) -> None:
        from confluent_kafka import Producer

        self.api = f"http://{api}/2020-01-01/extension"
        self.settings = settings
        self.path = path
        self.stats = Stats()
        self.sealer = Sealer(settings.function_key) if settings.function_key else None
        self.producer = Producer(settings.kafka_security.client_config(
            settings.kafka_bootstrap or "127.0.0.1:1", {
                "enable.idempotence": True, "partitioner": "murmur2_random",
                "linger.ms": 20, "message.timeout.ms": 30_000,
                "reconnect.backoff.max.ms": 5_000,
                "error_cb": lambda err: self.stats.add("broker_errors"),
            }))
        if os.path.exists(path):
            os.unlink(path)
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.socket.bind(path)
        self.socket.settimeout(0.2)
        self._stopping = threading.Event()
        self._receiver = threading.Thread(target=self._receive, name="governor-receive",
                                          daemon=True)
        self.identifier = ""

    def register(self) -> None:
        request = urllib.request.Request(
            f"{self.api}/register", method="POST",
            data=json.dumps({"events": ["INVOKE", "SHUTDOWN"]}).encode(),
            headers={"Lambda-Extension-Name": NAME, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            self.identifier = response.headers["Lambda-Extension-Identifier"]

    def next_event(self) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.api}/event/next", headers={"Lambda-Extension-Identifier": self.identifier})
        with urllib.request.urlopen(request) as response:
            event: dict[str, Any] = json.loads(response.read())
            return event

    def run(self) -> int:
        """Register, then serve events until ``SHUTDOWN``; the exit status."""
        self._receiver.start()
        self.register()
        flushed = time.monotonic()
        while True:
            event = self.next_event()
            if event.get("eventType") == "SHUTDOWN":
                deadline_ms = float(event.get("deadlineMs") or 0)
                self.shutdown(max(0.1, deadline_ms / 1000 - time.time() - 0.2))
                return 0
            self.producer.poll(0)
            if time.monotonic() - flushed >= FLUSH_EVERY_S:
                self.producer.flush(0.2)
                flushed = time.monotonic()

    def shutdown(self, budget_s: float) -> None:
        """Take in what the function handed over, deliver it, stop."""
        self._stopping.set()
        self._receiver.join(min(1.0, budget_s / 2))
        self._drain()
        left = self.producer.flush(max(0.05, budget_s - 0.1))
        if left:
            self.stats.add("dropped_at_shutdown", left)
        self.socket.close()
        os.unlink(self.path)
        log.info("governor extension stopped: %s", self.stats.snapshot())

    def _receive(self) -> None:
        while not self._stopping.is_set():
            try:
                frame = self.socket.recv(MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError:
                return
            self._produce(frame)

    def _drain(self) -> None:
        self.socket.setblocking(False)
        while True:
            try:
                frame = self.socket.recv(MAX_DATAGRAM)
            except (BlockingIOError, OSError):
                return
            self._produce(frame)

    def _produce(self, frame: bytes) -> None:
        key, _, payload = frame[1:].partition(b"\n")
        topic = TOPICS.get(frame[:1])
        if topic is None or not payload:
            self.stats.add("dropped_bad_frame")
            return
        try:
            headers = self.sealer.headers(payload) if self.sealer is not None else None
            self.producer.produce(self.settings.topic(topic), payload, key, headers=headers)
            self.stats.add("produced")
        except BufferError:
            self.stats.add("dropped_buffer_full")
        self.producer.poll(0)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="[governor-extension] %(message)s",
                        stream=sys.stderr)
    api = os.environ.get("AWS_LAMBDA_RUNTIME_API", "")
    if not api:
        log.error("AWS_LAMBDA_RUNTIME_API is not set: this runs as a Lambda extension")
        return 2
    return Extension(api, AgentSettings.from_env(),
                     os.environ.get("GOVERNOR_EXTENSION_SOCKET", EXTENSION_SOCKET)).run()


if __name__ == "__main__":
    sys.exit(main())
