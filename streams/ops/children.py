"""Child processes of the embedded stack that must not outlive their parent.

Two guards, because a parent killed with SIGKILL runs no cleanup of its own:

* on Linux the child asks the kernel for SIGKILL when its parent dies
  (``prctl(PR_SET_PDEATHSIG)``, set between fork and exec by :func:`dies_with_parent`);
  the kernel ties it to the *thread* that started the child, so start children from
  the main thread (``governor up`` and the test fixtures do);
* a pid file records the child and its parent; the next start finds a child whose
  parent is gone (another system, or a kill between fork and ``prctl``) and stops it
  (:func:`stop_orphan`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from streams.errors import StackError

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def dies_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for :class:`subprocess.Popen` that has the kernel kill the child
    when the process starting it dies; ``None`` where the kernel offers no such thing
    (the pid file check still applies there)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl
    parent = os.getpid()

    def arm() -> None:  # runs in the child, between fork and exec
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request was made
            os._exit(1)

    return arm


@dataclass(frozen=True)
class PidFile:
    """``{"pid": child, "parent": parent, "binary": path}`` at ``path``."""

    path: Path

    def write(self, pid: int, binary: Path) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps({"pid": pid, "parent": os.getpid(),
                                      "binary": str(binary)}))
        tmp.replace(self.path)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def stop_orphan(self, timeout_s: float = 5.0) -> int | None:
        """Stop the child this file names if its parent is gone and it still runs the
        recorded binary (a reused pid is left alone); return the pid stopped.

        Raises :class:`StackError` when the parent still runs: that stack is in use.
        """
        try:
            info = orjson.loads(self.path.read_bytes())
            pid, parent, binary = int(info["pid"]), int(info["parent"]), str(info["binary"])
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        if not runs(pid, binary):
            self.remove()
            return None
        current = parent_of(pid)
        if current is None:  # no /proc: judge by the recorded parent alone
            current = parent if alive(parent) else None
        if current == parent and parent != os.getpid():
            raise StackError(f"process {parent} already runs a broker (pid {pid}) for "
                             f"{self.path.parent}; stop it, or use another --data-dir")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout_s
        while runs(pid, binary) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.remove()
        return pid


def alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _state(pid) != "Z"


def runs(pid: int, binary: str) -> bool:
    """Whether process ``pid`` is alive and was started from ``binary``."""
    if not alive(pid):
        return False
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
    except OSError:  # no /proc here: trust the pid
        return True
    return os.fsdecode(argv0) == binary


def parent_of(pid: int) -> int | None:
    """Process ``pid``'s parent now (``None`` where ``/proc`` does not say)."""
    fields = _stat(pid)
    return int(fields[1]) if len(fields) > 1 else None


def _state(pid: int) -> str:
    """The process's state letter (``""`` where ``/proc`` does not say)."""
    fields = _stat(pid)
    return fields[0] if fields else ""


def _stat(pid: int) -> list[str]:
    """``/proc/PID/stat`` after the command name: state, parent pid, …"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return stat.rpartition(")")[2].split()
