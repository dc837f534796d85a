"""The stack file: where a running ``governor up`` / worker can be reached (broker,
query endpoint), for ``governor query`` and the operator commands.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from streams.settings import Settings

STACK_FILE = "stack.json"


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
