"""``governor up`` keeps thresholds, their audit, verdicts and decision snapshots across
a restart, on the same port, so a running agent carries on; its broker never outlives
it. Every stack here runs on free ports, never the default 9192, so the tests can run
beside a developer's own ``governor up``."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from opentelemetry import trace

import agents
from agents.compacted import read_to_end
from schemas import Action
from streams.errors import StackError
from streams.ops.broker import free_port, start_broker, tansu_binary
from streams.ops.children import PidFile, alive
from tests.integration.conftest import AgentFactory, interrupt, wait_for

pytestmark = pytest.mark.integration

PREFIX = "governor"  # the stack's default topic prefix


@dataclass
class Up:
    """One ``governor up`` process and what it printed."""

    process: subprocess.Popen[bytes]
    log: Path
    query_port: int

    @property
    def printed(self) -> str:
        return self.log.read_text()

    def health(self) -> dict[str, object]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.query_port}/health",
                                    timeout=2) as response:
            body: dict[str, object] = orjson.loads(response.read())
            return body


def _env(broker_port: int, query_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNOR_")}
    return {**env, "GOVERNOR_BROKER_PORT": str(broker_port),
            "GOVERNOR_QUERY_PORT": str(query_port), "GOVERNOR_WINDOW_SECONDS": "1",
            "GOVERNOR_WARMUP_WINDOWS": "3", "GOVERNOR_LEARNING_WINDOWS": "3",
            "GOVERNOR_SINK_WITHIN_SECONDS": "0.2"}


def _governor(data_dir: Path, *argv: str) -> list[str]:
    return [sys.executable, "-m", "streams", "--data-dir", str(data_dir), *argv]


def start_up(data_dir: Path, broker_port: int, query_port: int, run: int) -> Up:
    """``governor up`` in ``data_dir``, once its worker is ready."""
    log = data_dir.parent / f"up-{run}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(_governor(data_dir, "up"),
                                   env=_env(broker_port, query_port), stdout=out,
                                   stderr=subprocess.STDOUT)
    up = Up(process, log, query_port)

    def ready() -> bool:
        assert process.poll() is None, up.printed[-4000:]
        try:
            return bool(up.health().get("ready"))
        except OSError:
            return False

    wait_for(ready, timeout_s=120, interval_s=0.5)
    return up


def stop_up(up: Up) -> None:
    """Ctrl-C, as an operator stops it."""
    interrupt(up.process, 60)


@pytest.fixture
def stack_dir(tmp_path: Path) -> Iterator[Path]:
    data_dir = tmp_path / "state"
    yield data_dir
    pid_file = PidFile(data_dir / "broker.pid")  # nothing may be left running
    pid_file.stop_orphan()


def _keys(topic: str, bootstrap: str) -> set[bytes]:
    reading = read_to_end(bootstrap, f"{PREFIX}.{topic}")
    return {m.key() or b"" for m in reading.records}


def test_a_threshold_set_before_a_restart_is_in_force_at_the_agent_after_it(
        stack_dir: Path, agent_for: AgentFactory) -> None:
    broker_port, query_port = free_port(), free_port()
    name = f"exporter-{uuid.uuid4().hex[:8]}"
    up = start_up(stack_dir, broker_port, query_port, 1)
    try:
        bootstrap = re.search(r"GOVERNOR_KAFKA_BOOTSTRAP=(\S+)", up.printed)
        key = re.search(r"GOVERNOR_VERDICT_KEY=(\S+)", up.printed)
        assert bootstrap and key, up.printed
        assert bootstrap[1] == f"127.0.0.1:{broker_port}"  # pasteable: no scheme
        subprocess.run(_governor(stack_dir, "thresholds", "set", name,
                                 "egress_allow=api.stripe.com", "--reason", "only stripe"),
                       env=_env(broker_port, query_port), check=True, capture_output=True)
        runtime = agent_for(bootstrap[1], PREFIX, key=key[1])

        @agents.govern(function=name, team="payments")
        def handler(event: dict[str, str], context: object) -> str:
            trace.get_current_span().set_attribute("governor.egress.hosts", event["host"])
            return "sent"

        handler({"host": "api.stripe.com"}, None)  # allowed: the agent runs on, unthrottled
        agents.flush(5)
    finally:
        stop_up(up)

    up = start_up(stack_dir, broker_port, query_port, 2)  # same port: the agent finds it
    try:
        restored = re.search(r"(\d+) records of thresholds", up.printed)
        assert restored and int(restored[1]) >= 2, up.printed  # the threshold and its audit

        def isolated() -> bool:
            handler({"host": "dump.example.org"}, None)
            verdict = runtime.verdicts.current(name)
            return verdict is not None and verdict.action is Action.ISOLATE

        wait_for(isolated, timeout_s=60, interval_s=0.3)  # the restored threshold decided
        verdict = runtime.verdicts.current(name)
        assert verdict is not None and verdict.egress_allow == ["api.stripe.com"]
        history = subprocess.run(_governor(stack_dir, "thresholds", "history", name),
                                 env=_env(broker_port, query_port), capture_output=True,
                                 text=True, check=True)
        assert "only stripe" in history.stdout  # the audit trail survived too
        wait_for(lambda: name.encode() in _keys("state", bootstrap[1]), timeout_s=30)
    finally:
        stop_up(up)

    up = start_up(stack_dir, broker_port, query_port, 3)
    try:  # the verdict and the function's decision snapshot are there again
        assert name.encode() in _keys("verdicts", bootstrap[1])
        assert name.encode() in _keys("state", bootstrap[1])
        assert runtime.verdicts.current(name) is not None
    finally:
        stop_up(up)


def test_the_broker_dies_with_governor_up_even_on_kill_9(stack_dir: Path) -> None:
    broker_port, query_port = free_port(), free_port()
    up = start_up(stack_dir, broker_port, query_port, 1)
    broker = int(orjson.loads((stack_dir / "broker.pid").read_bytes())["pid"])
    assert alive(broker)
    up.process.kill()
    up.process.wait(10)
    wait_for(lambda: not alive(broker), timeout_s=10)
    up = start_up(stack_dir, broker_port, query_port, 2)  # the same port is free again
    stop_up(up)
    assert not (stack_dir / "broker.pid").exists()


def test_a_broker_whose_parent_is_gone_is_stopped_at_the_next_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An orphan (a parent killed before it could arm the guard, or another kernel)
    holding the port: the next start stops it, then listens there itself."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    orphan = subprocess.Popen([str(tansu_binary()), "broker", "--listener-url", url,
                               "--advertised-listener-url", url],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gone = subprocess.Popen(["true"])
    gone.wait()
    pid_file = tmp_path / "broker.pid"
    pid_file.write_bytes(orjson.dumps({"pid": orphan.pid, "parent": gone.pid,
                                       "binary": str(tansu_binary())}))
    with caplog.at_level(logging.WARNING, "governor.broker"):
        broker = start_broker(tmp_path / "broker.log", port=port, pid_file=pid_file)
    try:
        assert orphan.wait(10) == -signal.SIGKILL
        assert f"stopped broker {orphan.pid}, left running" in caplog.text
        assert orjson.loads(pid_file.read_bytes())["pid"] == broker.process.pid
    finally:
        broker.stop()
    assert not pid_file.exists()


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StackError, match=f"port {port} .* is taken.*GOVERNOR_BROKER_PORT"):
            start_broker(tmp_path / "broker.log", port=port, pid_file=tmp_path / "broker.pid")
