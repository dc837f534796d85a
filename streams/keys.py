"""The verdict key: one loader for the workers and the operator commands.

``GOVERNOR_VERDICT_KEY`` when set; else the key file in the data dir. Only the
embedded stack (``governor up``, ``governor demo``, ``governor bench loop``) creates
that file; everything else refuses to run without a key, so two workers can never
sign with two different keys that agents would both reject.
"""

from __future__ import annotations

import secrets

from streams.errors import VerdictKeyError
from streams.settings import Settings

KEY_FILE = "verdict.key"
"""The verdict key's file in the data dir (written by the embedded stack)."""


WEAK_KEYS = frozenset({"change-me-in-production", "change-me", "changeme", "secret",
                       "password", "governor", "test", "key", "default"})
"""Secrets a verdict key must never be (placeholders from examples)."""
MIN_KEY_CHARS = 32


def _weak(key: str) -> str:
    """Why ``key`` is too weak to sign verdicts with ("" when it is not)."""
    if key.strip().lower() in WEAK_KEYS:
        return "a known placeholder"
    if len(key) < MIN_KEY_CHARS:
        return f"{len(key)} characters long (at least {MIN_KEY_CHARS} are needed)"
    return ""


def load_verdict_key(settings: Settings, *, create: bool = False) -> bytes:
    """The key verdicts are signed with; ``create`` (the embedded stack only) writes a
    new random one into the data dir when there is none.

    Raises :class:`~streams.errors.VerdictKeyError` naming how to set one.
    """
    if settings.verdict_key:
        weak = _weak(settings.verdict_key)
        if weak:
            raise VerdictKeyError(
                f"GOVERNOR_VERDICT_KEY is {weak}: anyone who guesses it can sign verdicts "
                "for every function. Set a random secret of at least 32 characters, e.g. "
                "`python -c \"import secrets; print(secrets.token_hex(32))\"`")
        return settings.verdict_key.encode()
    path = settings.data_dir / KEY_FILE
    if create and not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    try:
        key = path.read_text().strip()
    except OSError:
        key = ""
    if not key:
        raise VerdictKeyError(
            f"no verdict key: set GOVERNOR_VERDICT_KEY to the same secret on every worker, "
            f"operator and agent (for example the output of `python -c \"import secrets; "
            f"print(secrets.token_hex(32))\"`), or run in the data dir of `governor up`, "
            f"which keeps one in {path}")
    return key.encode()
