"""The agent stays light; the public surface is complete."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import agents
import schemas

ROOT = Path(__file__).parents[2]
HEAVY = ("faust", "river", "clickhouse_connect", "chdb", "regorus", "aiokafka")


def test_agent_extra_pulls_no_heavy_packages() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    agent = " ".join(meta["optional-dependencies"]["agent"] + meta["dependencies"]).lower()
    assert not [p for p in ("faust", "river", "clickhouse", "chdb", "regorus") if p in agent]
    assert meta["scripts"]["governor"] == "streams.cli:main"


def test_importing_and_using_the_agent_loads_no_heavy_module() -> None:
    code = ("import sys, agents\n"
            "agents.configure(agents.AgentSettings(), agents.InMemoryExporter())\n"
            "f = agents.govern(function='x')(lambda: 1)\nf(); agents.flush()\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_public_names_are_exported() -> None:
    for module in (agents, schemas):
        public = {n for n in vars(module) if not n.startswith("_")
                  and not isinstance(vars(module)[n], type(sys))}
        assert set(module.__all__) == public, module.__name__
