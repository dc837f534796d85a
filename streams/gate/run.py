"""``governor gate``: read the manifests, compare with the git base, predict, evaluate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.decisions.policy import PolicyEngine
from streams.errors import GateError
from streams.gate.diff import ChangeKind, GitBase, changes, revision
from streams.gate.evaluate import STAGES, evaluate
from streams.gate.manifests import SUFFIXES, manifest_files, read_manifest
from streams.gate.predict import Predictor
from streams.gate.result import GateReport
from streams.gate.spec import FunctionSpec, Manifest, Skipped, Source


@dataclass(frozen=True, slots=True)
class GateRequest:
    """What to gate: manifest files or directories, the stage, the git base."""

    paths: tuple[Path, ...]
    stage: str = "pre-deploy"
    base: str | None = None
    thresholds: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Read:
    functions: list[FunctionSpec]
    skipped: list[Skipped]
    files: list[str]


def _read(named: Sequence[tuple[str, str, bool]]) -> _Read:
    """(display path, text, named explicitly) of each file → its functions."""
    found = _Read([], [], [])
    for path, text, explicit in named:
        manifest: Manifest | None = read_manifest(path, text)
        if manifest is None:
            if explicit:
                found.skipped.append(Skipped(Source(path, 1), path,
                                             "not a deployment manifest this gate reads"))
            continue
        found.files.append(path)
        found.functions.extend(manifest.functions)
        found.skipped.extend(manifest.skipped)
    return found


def _current(paths: Sequence[Path]) -> _Read:
    named = []
    for root in paths:
        if not root.exists():
            continue  # removed since the base: its functions show as removed
        for path in manifest_files(root):
            try:
                named.append((str(path), path.read_text(encoding="utf-8"), path == root))
            except (OSError, UnicodeDecodeError) as exc:
                raise GateError(f"{path}:1: cannot read it as UTF-8 text: {exc}") from None
    return _read(named)


def _at_base(paths: Sequence[Path], ref: str) -> tuple[list[FunctionSpec], str]:
    anchor = next((p for p in paths if p.exists()), Path.cwd())
    base = GitBase.at(anchor.resolve(), ref)
    named = []
    for root in paths:
        prefix = base.relative(root.resolve())
        for name in base.files(root.resolve()):
            hidden = any(p.startswith(".") for p in Path(name).relative_to(prefix).parts)
            if Path(name).suffix in SUFFIXES and not hidden:
                named.append((f"{ref}:{name}", base.read(name), False))
    return _read(named).functions, base.revision


def gate(request: GateRequest, engine: PolicyEngine, predictor: Predictor) -> GateReport:
    """Every function of the manifests, what changed since the base, its prediction
    (new and changed functions, or all without a base) and the bundle's findings."""
    if request.stage not in STAGES:
        raise GateError(f"--stage {request.stage}: expected one of {', '.join(STAGES)}")
    if not request.paths:
        raise GateError("no manifest given: name files or directories to gate")
    missing = [str(p) for p in request.paths if not p.exists()]
    if missing and request.base is None:
        raise GateError(f"{', '.join(missing)}: no such file or directory")
    current = _current(request.paths)
    base_functions, base_commit = (None, "") if request.base is None else \
        _at_base(request.paths, request.base)
    anchor = next((p for p in request.paths if p.exists()), Path.cwd())
    rev = revision(anchor.resolve())
    results = []
    for change in changes(current.functions, base_functions):
        wanted = change.kind in (ChangeKind.NEW, ChangeKind.CHANGED, ChangeKind.CURRENT)
        prediction = predictor.predict(change.spec) if wanted else None
        results.append(evaluate(engine, change, prediction, request.stage, rev,
                                request.thresholds))
    return GateReport(stage=request.stage, revision=rev, base=base_commit,
                      bundle=engine.digest, files=tuple(current.files),
                      results=tuple(results), skipped=tuple(current.skipped))
