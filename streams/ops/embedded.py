"""A broker and a worker process on this machine, for the demo and the loop benchmark."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import orjson

from streams.errors import StackError
from streams.keys import load_state_key, load_telemetry_keys, load_verdict_key
from streams.ops.broker import free_port, start_broker
from streams.ops.children import dies_with_parent
from streams.ops.stackfile import read_stack_file
from streams.settings import Settings


@contextmanager
def local_stack(settings: Settings, env: dict[str, str], app_id: str) -> Iterator[Settings]:
    """Start the embedded broker and a worker with ``env``; yield the settings to reach them.

    With ``GOVERNOR_KAFKA_BOOTSTRAP`` set, nothing is started: the running deployment
    is used as it is.
    """
    if not settings.embedded_broker:
        yield settings
        return
    if read_stack_file(settings):
        raise StackError(f"a Governor stack already runs on {settings.data_dir}; stop "
                         "it or pass --data-dir to use another directory")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    load_verdict_key(settings, create=True)  # the workers' private key (agents: public)
    load_state_key(settings, create=True)  # the workers' snapshot key (theirs alone)
    if settings.telemetry_auth == "on":  # opted in: functions need keys from this one
        load_telemetry_keys(settings, create=True)
    else:
        env = {**env, "GOVERNOR_TELEMETRY_AUTH": "off"}
    broker = start_broker(settings.data_dir / "broker.log")
    worker: subprocess.Popen[bytes] | None = None
    try:
        settings = settings.replace(kafka_bootstrap=broker.bootstrap, query_port=free_port(),
                                    app_id=app_id)
        worker = start_worker(settings, env)
        yield settings
    finally:
        if worker is not None and worker.poll() is None:
            worker.terminate()
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
        broker.stop()


def start_worker(settings: Settings, env: dict[str, str],
                 timeout_s: float = 90.0) -> subprocess.Popen[bytes]:
    """``governor worker`` as a child process (it dies with this one), once its health
    endpoint says ready."""
    child_env = {**os.environ, **env,
                 "GOVERNOR_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
                 "GOVERNOR_DATA_DIR": str(settings.data_dir),
                 "GOVERNOR_QUERY_PORT": str(settings.query_port),
                 "GOVERNOR_APP_ID": settings.app_id}
    log = open(settings.data_dir / "worker.log", "ab")  # noqa: SIM115
    worker = subprocess.Popen([sys.executable, "-m", "streams", "worker"], env=child_env,
                              stdout=log, stderr=subprocess.STDOUT,
                              preexec_fn=dies_with_parent())
    deadline = time.monotonic() + timeout_s
    url = f"http://{settings.query_host}:{settings.query_port}/health"
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise StackError(f"the worker exited with status {worker.returncode}; see "
                             f"{settings.data_dir / 'worker.log'}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if orjson.loads(response.read()).get("ready"):
                    return worker
        except OSError:
            pass
        time.sleep(0.3)
    worker.kill()
    raise StackError(f"the worker was not ready within {timeout_s:.0f}s; see "
                     f"{settings.data_dir}/worker.log")
