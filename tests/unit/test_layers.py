"""The layering of docs/architecture.md, as import-linter contracts (pyproject.toml),
checked on the real import graph; and shown to catch an upward import."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import grimp
import pytest
from importlinter import configuration
from importlinter.contracts.forbidden import ForbiddenContract
from importlinter.contracts.layers import LayersContract

ROOT = Path(__file__).resolve().parents[2]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
CONTRACTS = {c["id"]: c for c in CONFIG["contracts"]}
SESSION = {"root_packages": CONFIG["root_packages"], "include_external_packages": "True"}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    configuration.configure()  # what the contracts read (a timer, readers); no logging
    return grimp.build_graph(*CONFIG["root_packages"], include_external_packages=True,
                             cache_dir=None)


def _options(contract_id: str) -> dict[str, Any]:
    return {k: v for k, v in CONTRACTS[contract_id].items() if k not in ("id", "name", "type")}


def test_every_contract_holds() -> None:
    """``lint-imports`` itself, in its own process (it configures logging)."""
    run = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache",
                          "--no-logo"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_an_upward_import_breaks_the_layers(graph: grimp.ImportGraph) -> None:
    layers = LayersContract("layers", SESSION, _options("streams-layers"))
    assert layers.check(graph, verbose=False).kept
    graph.add_import(importer="streams.decisions.detection", imported="streams.pipeline.app",
                     line_number=1, line_contents="from streams.pipeline.app import create_app")
    assert not layers.check(graph, verbose=False).kept


def test_a_worker_import_in_the_agent_breaks_its_contract(graph: grimp.ImportGraph) -> None:
    light = ForbiddenContract("light", SESSION, _options("agent-is-light"))
    assert light.check(graph, verbose=False).kept
    graph.add_import(importer="agents._decorator", imported="river", line_number=1,
                     line_contents="import river")
    assert not light.check(graph, verbose=False).kept


def test_decision_code_reads_no_clock() -> None:
    """Time reaches the decisions as an argument (``now_ns``), so simulations and
    tests drive it without patching anything."""
    for path in sorted((ROOT / "streams" / "decisions").glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module or "" for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom)}
        assert "time" not in imported, f"{path.name} imports time: take now_ns instead"


def test_no_production_module_patches_anything() -> None:
    for path in sorted((ROOT / "streams").rglob("*.py")):
        assert "unittest" not in path.read_text(), f"{path} uses unittest (mock?)"
