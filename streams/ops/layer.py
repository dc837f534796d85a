"""``governor package lambda-layer``: the agent and its Lambda extension as a layer zip.

The zip holds ``python/`` (the agent, the event contracts and their dependencies,
built for one architecture and Python version from the platform's binary wheels) and
``extensions/governor``, which Lambda starts as an external extension
(``python -m agents.extension``, with the function's Python). Lambda puts a layer at
``/opt``; ``/opt/python`` is on the function's path, so ``from agents import govern``
needs nothing else in the deployment package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import agents
import schemas
from streams.errors import StreamsError

ARCHITECTURES = {
    "x86_64": ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"),
    "arm64": ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"),
}
PYTHONS = ("3.11", "3.12", "3.13")
"""The Lambda Python runtimes the agent supports (it needs 3.11 or later)."""
REQUIREMENTS = ("opentelemetry-sdk>=1.25", "confluent-kafka>=2.3", "cryptography>=42",
                "orjson>=3.9", "msgspec>=0.18")
LAUNCHER = """#!/bin/sh
# Governor's Lambda extension: delivers the agent's telemetry to Kafka (agents.extension).
layer="${GOVERNOR_LAYER_DIR:-/opt}"
export PYTHONPATH="$layer/python${PYTHONPATH:+:$PYTHONPATH}"
for python in "$GOVERNOR_EXTENSION_PYTHON" /var/lang/bin/python3 python3; do
    if [ -n "$python" ] && command -v "$python" >/dev/null 2>&1; then
        exec "$python" -m agents.extension "$@"
    fi
done
echo "[governor-extension] no python found; set GOVERNOR_EXTENSION_PYTHON" >&2
exit 1
"""


class LayerError(StreamsError):
    """The layer could not be built (the reason says what to do)."""


def build_layer(out_dir: Path, architecture: str, python: str) -> Path:
    """Build ``governor-layer-<python>-<architecture>.zip`` in ``out_dir``; its path."""
    if architecture not in ARCHITECTURES:
        raise LayerError(f"architecture {architecture!r}: use {' or '.join(ARCHITECTURES)}")
    if python not in PYTHONS:
        raise LayerError(f"python {python!r}: use one of {', '.join(PYTHONS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"governor-layer-python{python}-{architecture}.zip"
    with tempfile.TemporaryDirectory(prefix="governor-layer-") as tmp:
        build = Path(tmp)
        platforms = [arg for tag in ARCHITECTURES[architecture] for arg in ("--platform", tag)]
        _pip("install", "--target", str(build / "python"), "--only-binary=:all:",
             "--implementation", "cp", "--python-version", python, *platforms,
             *REQUIREMENTS)
        # the agent and contracts only (pure Python): the workers' code stays out
        for package in (agents, schemas):
            source = Path(package.__file__ or "").parent
            shutil.copytree(source, build / "python" / source.name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        launcher = build / "extensions" / "governor"
        launcher.parent.mkdir()
        launcher.write_text(LAUNCHER)
        launcher.chmod(0o755)
        _zip(build, ("python", "extensions"), target)
    return target


def _pip(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q",
                           *args], capture_output=True, text=True, check=False)
    if done.returncode:
        raise LayerError(f"pip {args[0]} failed: {done.stderr.strip()[-800:]}")


def _zip(base: Path, folders: tuple[str, ...], target: Path) -> None:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for folder in folders:
            for path in sorted((base / folder).rglob("*")):
                if "__pycache__" in path.parts or path.is_dir():
                    continue
                info = zipfile.ZipInfo.from_file(path, path.relative_to(base).as_posix())
                info.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
                with path.open("rb") as fh:
                    archive.writestr(info, fh.read(), zipfile.ZIP_DEFLATED)
