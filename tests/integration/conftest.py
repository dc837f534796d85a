"""One real broker (Tansu) and one worker with its own chDB data dir per session."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest

import agents
from streams.kafka import ensure_topics
from streams.ops.broker import free_port, start_broker

pytestmark = pytest.mark.integration

VERDICT_KEY = "integration-test-key-0f3c9a1e5b7d2468ace"
STATE_KEY = "integration-state-key-7b2e4d6f8a0c1e3b5d79"
"""The workers' snapshot key: start_worker sets it; operators' and agents' envs never do."""


@dataclass(frozen=True)
class DemoRun:
    """A finished ``governor demo``: its data dir, what it printed, how it exited."""

    data_dir: Path
    stdout: str
    stderr: str
    returncode: int

    def governor(self, *argv: str) -> list[str]:
        """A ``governor`` command line on the demo's data dir."""
        return [sys.executable, "-m", "streams", "--data-dir", str(self.data_dir), *argv]


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """``governor demo`` run once for the session, on its own embedded stack, with a
    short warm-up and incidents; its history stays in ``data_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNOR_")}
    data_dir = tmp_path_factory.mktemp("demo") / "state"
    run = subprocess.run([sys.executable, "-m", "streams", "--data-dir", str(data_dir),
                          "demo", "--warmup", "16", "--incident", "14"], env=env,
                         capture_output=True, text=True, timeout=300)
    return DemoRun(data_dir, run.stdout, run.stderr, run.returncode)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    started = start_broker(tmp_path_factory.mktemp("broker") / "broker.log")
    yield started.bootstrap
    started.stop()


@pytest.fixture
def prefix(broker: str) -> str:
    """A unique topic prefix for one test, with the topics created."""
    name = f"t{uuid.uuid4().hex[:10]}"
    ensure_topics(broker, name)
    return name


@dataclass(frozen=True)
class WorkerStack:
    bootstrap: str
    prefix: str
    data_dir: Path
    query_url: str
    process: subprocess.Popen[bytes]

    def env(self) -> dict[str, str]:
        return {**os.environ, "GOVERNOR_KAFKA_BOOTSTRAP": self.bootstrap,
                "GOVERNOR_TOPIC_PREFIX": self.prefix, "GOVERNOR_DATA_DIR": str(self.data_dir),
                "GOVERNOR_VERDICT_KEY": VERDICT_KEY}

    def health(self) -> dict[str, object]:
        with urllib.request.urlopen(self.query_url + "/health", timeout=2) as response:
            body: dict[str, object] = orjson.loads(response.read())
            return body


def start_worker(broker: str, prefix: str, data_dir: Path,
                 extra_env: dict[str, str] | None = None) -> WorkerStack:
    """A real worker process (Faust + chDB), with short windows so the closed loop can
    be exercised in seconds; returns once it is ready."""
    port = free_port()
    env = {**os.environ, "GOVERNOR_KAFKA_BOOTSTRAP": broker, "GOVERNOR_TOPIC_PREFIX": prefix,
           "GOVERNOR_DATA_DIR": str(data_dir), "GOVERNOR_VERDICT_KEY": VERDICT_KEY,
           "GOVERNOR_STATE_KEY": STATE_KEY, "GOVERNOR_QUERY_PORT": str(port),
           "GOVERNOR_WINDOW_SECONDS": "1",
           "GOVERNOR_WARMUP_WINDOWS": "3", "GOVERNOR_LEARNING_WINDOWS": "3",
           "GOVERNOR_HOLD_SECONDS": "2",
           "GOVERNOR_SINK_WITHIN_SECONDS": "0.2", "GOVERNOR_LOG_LEVEL": "info",
           "GOVERNOR_TELEMETRY_AUTH": "off",
           **(extra_env or {})}
    log = open(data_dir / "worker.log", "ab")  # noqa: SIM115
    process = subprocess.Popen([sys.executable, "-m", "streams", "worker"], env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    log.close()
    stack = WorkerStack(broker, prefix, data_dir, f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + 90
    while True:
        assert process.poll() is None, (data_dir / "worker.log").read_text()[-3000:]
        try:
            if stack.health().get("ready"):
                return stack
        except OSError:
            pass
        assert time.monotonic() < deadline, "worker not ready in 90 s"
        time.sleep(0.3)


def interrupt(process: subprocess.Popen[Any], timeout_s: float = 30.0) -> None:
    """Ctrl-C, as an operator stops ``governor up``; killed if it does not end in time."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def stop_worker(stack: WorkerStack) -> None:
    stack.process.terminate()
    try:
        stack.process.wait(30)
    except subprocess.TimeoutExpired:
        stack.process.kill()


@pytest.fixture(scope="session")
def worker(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerStack]:
    """The session's worker, on its own topic prefix and chDB data dir."""
    stack = start_worker(broker, f"w{uuid.uuid4().hex[:10]}", tmp_path_factory.mktemp("governor"))
    yield stack
    stop_worker(stack)


AgentFactory = Callable[..., agents.Runtime]


@pytest.fixture
def agent_for() -> Iterator[AgentFactory]:
    """Configure the process's agent runtime; shut it down after the test."""

    def configure(bootstrap: str, prefix: str, key: str = VERDICT_KEY) -> agents.Runtime:
        return agents.configure(agents.AgentSettings(
            kafka_bootstrap=bootstrap, topic_prefix=prefix, verdict_key=key.encode(),
            export_interval_ms=50))

    yield configure
    agents.shutdown(2.0)


T = TypeVar("T")


def call_at(handler: Callable[[None, None], object], rate: float, seconds: float) -> int:
    """Call a governed ``handler`` at ``rate`` per second for ``seconds``; the calls
    refused by a throttle."""
    refused, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            handler(None, None)
        except agents.FunctionThrottled:
            refused += 1
        time.sleep(1 / rate)
    return refused


def wait_for(condition: Callable[[], T], timeout_s: float = 30.0, interval_s: float = 0.2) -> T:
    """Poll ``condition()`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s}s (last value {value!r})")
        time.sleep(interval_s)


ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
_ALERTMANAGER_CONFIG = """\
route:
  receiver: "null"
  group_wait: 1h
receivers:
  - name: "null"
"""


@pytest.fixture(scope="session")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Alertmanager (Debian's ``prometheus-alertmanager``, installed by
    ``.ci/run``) for the session; its URL. Tests tell their alerts apart by function."""
    if ALERTMANAGER is None:
        pytest.skip("no Alertmanager binary: apt-get install prometheus-alertmanager "
                    "(.ci/run does)")
    home = tmp_path_factory.mktemp("alertmanager")
    (home / "alertmanager.yml").write_text(_ALERTMANAGER_CONFIG)
    port = free_port()
    process = subprocess.Popen(
        [ALERTMANAGER, f"--config.file={home / 'alertmanager.yml'}", f"--storage.path={home}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=(home / "log").open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _alertmanager_ready(url, process, home), 30)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _alertmanager_ready(url: str, process: subprocess.Popen[bytes], home: Path) -> bool:
    assert process.poll() is None, (home / "log").read_text()[-2000:]
    try:
        with urllib.request.urlopen(url + "/-/ready", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def alerts_of(url: str, function: str) -> list[dict[str, Any]]:
    """The active alerts of ``function`` in the Alertmanager at ``url``."""
    with urllib.request.urlopen(f"{url}/api/v2/alerts?active=true&silenced=true&"
                                f"inhibited=true&unprocessed=true", timeout=5) as response:
        alerts: list[dict[str, Any]] = orjson.loads(response.read())
    return [a for a in alerts if a["labels"].get("function") == function]
