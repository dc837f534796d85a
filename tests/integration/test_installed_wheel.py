"""Governor as a user installs it: the wheel, not this checkout.

The wheel is built from the working tree and installed (not editable) with its
dependencies into fresh virtual environments, which see nothing of the development
one. From a directory outside the checkout, ``governor up`` runs the embedded stack,
a function governed by ``agents.govern`` sends its telemetry, and ``governor query``
reads it back: policies, migrations, queries and the topic spec come from the
installed package. A second environment holds the ``agent`` extra alone.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from streams.ops.broker import free_port
from tests.integration.conftest import interrupt, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
LEFT_OUT = (".venv", ".git", "build", "dist", "*.egg-info", ".governor", "__pycache__",
            ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis")
CALLS = 40


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of the working tree, built from a copy (the build leaves files)."""
    import shutil

    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*LEFT_OUT))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                    "--wheel-dir", str(tmp / "dist"), str(source)],
                   check=True, capture_output=True, timeout=300)
    [built] = (tmp / "dist").glob("faas_governor-*.whl")
    return built


def _environment(directory: Path, requirement: str) -> Path:
    """A fresh virtual environment with ``requirement`` installed; its bin directory."""
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True, timeout=120)
    install = subprocess.run([str(directory / "bin" / "python"), "-m", "pip", "install",
                              "--quiet", requirement], capture_output=True, text=True,
                             timeout=600)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    return directory / "bin"


def _env(bin_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a user's shell: this one's tools, none of the checkout's
    Python, no GOVERNOR_* setting."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GOVERNOR_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


@pytest.fixture(scope="module")
def local_install(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _environment(tmp_path_factory.mktemp("venv") / "local", f"{wheel}[local]")


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A working directory outside the checkout."""
    directory = tmp_path / "work"
    directory.mkdir()
    assert not directory.resolve().is_relative_to(ROOT.resolve())
    return directory


@pytest.fixture
def stack(local_install: Path, elsewhere: Path) -> Iterator[dict[str, str]]:
    """``governor up`` of the installed package, run in ``elsewhere``; what it printed."""
    port = free_port()
    log = elsewhere / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen([str(local_install / "governor"), "up"], cwd=elsewhere,
                              env=_env(local_install, GOVERNOR_QUERY_PORT=str(port),
                                       GOVERNOR_BROKER_PORT=str(free_port())),
                              stdout=out, stderr=subprocess.STDOUT)
    try:
        def ready() -> bool:
            assert up.poll() is None, log.read_text()[-4000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health",
                                            timeout=2) as response:
                    return bool(orjson.loads(response.read()).get("ready"))
            except OSError:
                return False

        wait_for(ready, timeout_s=120, interval_s=0.5)
        printed = log.read_text()
        bootstrap = re.search(r"GOVERNOR_KAFKA_BOOTSTRAP=(\S+)", printed)
        key = re.search(r"GOVERNOR_VERDICT_KEY=(\S+)", printed)
        assert bootstrap and key, printed
        yield {"GOVERNOR_KAFKA_BOOTSTRAP": bootstrap[1], "GOVERNOR_VERDICT_KEY": key[1]}
    finally:
        interrupt(up)


def _agent(calls: int) -> str:
    """A function governed by the installed agent, called ``calls`` times; prints how
    many records it handed to the broker."""
    return textwrap.dedent(f"""
        import agents

        @agents.govern(function="wheel-checkout", team="payments", memory_mb=256)
        def handler(event, context):
            return {{"statusCode": 200}}

        for _ in range({calls}):
            handler({{}}, None)
        agents.flush(10.0)
        print(agents.stats().get("produced", 0))
        agents.shutdown(10.0)
    """)


def _governor(bin_dir: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bin_dir / "governor"), *argv], cwd=cwd, env=_env(bin_dir),
                          capture_output=True, text=True, timeout=120)


def test_the_installed_wheel_closes_the_loop_outside_the_checkout(
        local_install: Path, elsewhere: Path, stack: dict[str, str]) -> None:
    where = subprocess.run(
        [str(local_install / "python"), "-c",
         "import agents, infra, policies, streams; "
         "print('\\n'.join(m.__file__ for m in (agents, infra, policies, streams)))"],
        cwd=elsewhere, env=_env(local_install), capture_output=True, text=True, check=True)
    site = (local_install.parent / "lib").resolve()
    assert all(Path(p).resolve().is_relative_to(site) for p in where.stdout.split()), where.stdout

    version = _governor(local_install, elsewhere, "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"governor {VERSION}"

    agent = subprocess.run([str(local_install / "python"), "-c", _agent(CALLS)], cwd=elsewhere,
                           env=_env(local_install, **stack), capture_output=True, text=True,
                           timeout=120)
    assert agent.returncode == 0, agent.stderr
    assert int(agent.stdout.split()[-1]) >= CALLS  # costs and spans handed to the broker

    def stored() -> int:
        run = _governor(local_install, elsewhere, "query",
                        "SELECT count() AS n FROM cost_events", "--format", "json")
        assert run.returncode == 0, run.stderr
        return int(orjson.loads(run.stdout)[0]["n"])

    assert wait_for(lambda: stored() >= CALLS, timeout_s=60)
    assert stored() == CALLS
    table = _governor(local_install, elsewhere, "query", "SELECT count() FROM cost_events")
    assert re.search(rf"│\s*{CALLS}\s*│", table.stdout), table.stdout

    timeline = _governor(local_install, elsewhere, "query", "--file",
                         "what_happened_to_function", "--param", "function=wheel-checkout")
    assert timeline.returncode == 0, timeline.stderr
    show = _governor(local_install, elsewhere, "thresholds", "show", "wheel-checkout")
    assert show.returncode == 0, show.stderr
    assert "in force for wheel-checkout (team payments, from its latest cost event" in show.stdout
    ghost = _governor(local_install, elsewhere, "verdict", "isolate", "wheel-chekout",
                      "--reason", "typo")
    assert ghost.returncode == 2 and "wheel-chekout has never been seen" in ghost.stderr


def test_the_agent_extra_alone_names_the_extra_a_command_needs(
        wheel: Path, tmp_path: Path, elsewhere: Path) -> None:
    bin_dir = _environment(tmp_path / "agent", f"{wheel}[agent]")
    version = _governor(bin_dir, elsewhere, "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"governor {VERSION}"
    for argv in (["worker"], ["up"], ["query", "SELECT 1"], ["thresholds", "show"]):
        run = _governor(bin_dir, elsewhere, *argv)
        assert run.returncode == 2, run
        assert "Traceback" not in run.stderr, run.stderr
        assert run.stderr.startswith(f"governor: error: governor {argv[0]}")
        assert 'needs the streams extra' in run.stderr
        assert 'pip install "faas-governor[streams]"' in run.stderr
    governed = subprocess.run(  # the agent itself runs on what its extra brings
        [str(bin_dir / "python"), "-c", _agent(3)], cwd=elsewhere, env=_env(bin_dir),
        capture_output=True, text=True, timeout=120)
    assert governed.returncode == 0, governed.stderr
    assert governed.stdout.split() == ["0"]  # no broker set: telemetry stays in memory
