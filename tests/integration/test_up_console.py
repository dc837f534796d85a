"""``governor up`` as an operator runs it, its output piped: the verdicts it sees are
printed as they happen, with a plain status line (no terminal control characters)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import orjson
import pytest

from streams.ops.broker import free_port
from tests.integration.conftest import interrupt, wait_for

pytestmark = pytest.mark.integration

READY_LINE = r"^ready · \d+ events \(\d+/s\) · "


def test_up_prints_verdicts_as_they_happen_and_a_plain_status_line(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "GOVERNOR_DATA_DIR": str(tmp_path / "data"),
           "GOVERNOR_QUERY_PORT": str(port), "GOVERNOR_BROKER_PORT": str(free_port())}
    env.pop("GOVERNOR_KAFKA_BOOTSTRAP", None)
    log, errors = tmp_path / "up.log", tmp_path / "up.err"
    with log.open("wb") as out, errors.open("wb") as err:
        up = subprocess.Popen([sys.executable, "-m", "streams", "up"], env=env, stdout=out,
                              stderr=err)

    def shown() -> str:
        return f"{log.read_text()}\n--- stderr:\n{errors.read_text()[-4000:]}"

    try:
        def ready() -> bool:
            assert up.poll() is None, shown()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz",
                                            timeout=2) as response:
                    return bool(orjson.loads(response.read())["ready"])
            except OSError:
                return False

        wait_for(ready, timeout_s=120, interval_s=0.5)
        # The status line is redrawn once a second; the readiness may flap while the
        # consumer groups settle, so wait for the line itself rather than one /readyz.
        try:
            wait_for(lambda: re.search(READY_LINE, log.read_text(), re.MULTILINE),
                     timeout_s=60, interval_s=0.5)
        except pytest.fail.Exception:
            pytest.fail(f"no ready status line within 60 s of /readyz:\n{shown()}")
        bootstrap = re.search(r"GOVERNOR_KAFKA_BOOTSTRAP=(\S+)", log.read_text())
        assert bootstrap, log.read_text()
        verdict = subprocess.run(
            [sys.executable, "-m", "streams", "verdict", "throttle", "checkout", "--rps", "2",
             "--for", "10m", "--reason", "cost review", "--actor", "ana", "--force"],
            env={**env, "GOVERNOR_KAFKA_BOOTSTRAP": bootstrap[1]}, capture_output=True,
            text=True, timeout=60)
        assert verdict.returncode == 0, verdict.stderr
        wait_for(lambda: "VERDICT THROTTLE checkout to 2 rps by operator:ana | cost review"
                 in log.read_text(), timeout_s=60)
    finally:
        interrupt(up)
    printed = log.read_text()
    assert re.search(READY_LINE, printed, re.MULTILINE), shown()
    assert "\r" not in printed and "\x1b" not in printed
