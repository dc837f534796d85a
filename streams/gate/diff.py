"""What a change does to each function: new, changed (field by field), unchanged or
removed, comparing the manifests on disk with the same paths at a git revision."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from streams.errors import GateError
from streams.gate.spec import COMPARED, FunctionSpec


class ChangeKind(StrEnum):
    CURRENT = "current"
    """No base to compare with: the function as it is."""
    NEW = "new"
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class FieldChange:
    field: str
    old: Any
    new: Any


@dataclass(frozen=True, slots=True)
class Change:
    """One function's change; ``spec`` is the new one (the old one when removed)."""

    kind: ChangeKind
    spec: FunctionSpec
    fields: tuple[FieldChange, ...] = ()

    def policy_input(self) -> dict[str, Any]:
        """The ``change`` part of the policy input."""
        return {"kind": self.kind.value,
                "fields": {c.field: {"old": c.old, "new": c.new} for c in self.fields}}


def compare(old: FunctionSpec, new: FunctionSpec) -> tuple[FieldChange, ...]:
    """The compared fields whose values differ, in :data:`COMPARED` order."""
    return tuple(FieldChange(name, old.value(name), new.value(name)) for name in COMPARED
                 if old.value(name) != new.value(name))


def changes(current: Iterable[FunctionSpec], base: Iterable[FunctionSpec] | None
            ) -> list[Change]:
    """Per function (by provider and name): against ``base``, or all current when there
    is no base to compare with."""
    now = {(s.provider, s.name): s for s in current}
    if base is None:
        return [Change(ChangeKind.CURRENT, s) for s in now.values()]
    before = {(s.provider, s.name): s for s in base}
    found = []
    for key, spec in now.items():
        if key not in before:
            found.append(Change(ChangeKind.NEW, spec))
            continue
        fields = compare(before[key], spec)
        found.append(Change(ChangeKind.CHANGED if fields else ChangeKind.UNCHANGED, spec,
                            fields))
    found += [Change(ChangeKind.REMOVED, spec) for key, spec in before.items()
              if key not in now]
    return found


@dataclass(frozen=True, slots=True)
class GitBase:
    """The files of one git revision of the repository a path is in."""

    root: Path
    revision: str

    @classmethod
    def at(cls, path: Path, ref: str) -> GitBase:
        """The repository holding ``path``, at ``ref`` resolved to a commit."""
        root = Path(_git(path if path.is_dir() else path.parent,
                         "rev-parse", "--show-toplevel").strip())
        commit = _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}",
                      what=f"--base {ref}: not a commit in {root}").strip()
        return cls(root, commit)

    def relative(self, path: Path) -> str:
        """``path`` relative to the repository's root; :class:`GateError` outside it."""
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            raise GateError(f"{path}: not in the git repository {self.root} that --base "
                            "reads") from None

    def files(self, path: Path) -> list[str]:
        """The files under ``path`` (or ``path`` itself) at the revision."""
        listed = _git(self.root, "ls-tree", "-r", "--name-only", self.revision, "--",
                      self.relative(path))
        return [line for line in listed.splitlines() if line]

    def read(self, name: str) -> str:
        return _git(self.root, "show", f"{self.revision}:{name}")


def revision(path: Path) -> str:
    """The checked-out commit of the repository holding ``path`` (``+dirty`` when files
    differ from it), or empty outside a repository."""
    try:
        return _git(path if path.is_dir() else path.parent, "describe", "--always",
                    "--dirty=+dirty", "--abbrev=12").strip()
    except GateError:
        return ""


def _git(cwd: Path, *args: str, what: str = "") -> str:
    command: Sequence[str] = ("git", "-C", str(cwd), *args)
    try:
        done = subprocess.run(command, capture_output=True, text=True, errors="replace",
                              check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GateError(f"git {' '.join(args)}: {exc}") from None
    if done.returncode != 0:
        raise GateError(what or f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout
