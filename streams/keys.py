"""The workers' keys: the verdict key (workers and operator commands), the
telemetry key and the state key (workers only).

``GOVERNOR_VERDICT_KEY`` when set; else the key file in the data dir. Only the
embedded stack (``governor up``, ``governor demo``, ``governor bench loop``) creates
that file — an Ed25519 private key, whose public half (:func:`agent_key`) is what
functions get; everything else refuses to run without a key, so two workers can never
sign with two different keys that agents would both reject. A shared HMAC secret is
still accepted (every function holding it could sign verdicts); a placeholder or short
one is refused.

``GOVERNOR_STATE_KEY`` (else ``state.key`` in the data dir, made by the embedded stack
like the verdict key) authenticates the workers' state snapshots
(:mod:`streams.decisions.snapshots`) with HMAC-SHA256. Only workers read it: functions
never get it, operator commands never load it, and it must be neither the verdict key
(a function may hold that one, as a shared HMAC secret) nor a telemetry secret (one
key, one purpose), so nothing but a worker can write a snapshot another worker will
restore.
"""

from __future__ import annotations

import secrets

from agents._auth import function_key
from schemas.signing import PRIVATE, PUBLIC, SignatureError, new_private_key, public_key
from streams.errors import StateKeyError, TelemetryKeyError, VerdictKeyError
from streams.settings import Settings

KEY_FILE = "verdict.key"
"""The verdict key's file in the data dir (written by the embedded stack)."""
STATE_KEY_FILE = "state.key"
"""The state key's file in the data dir (written by the embedded stack)."""
KEY_ID = "governor-1"
"""The key id of a key the embedded stack makes."""


def agent_key(settings: Settings) -> bytes:
    """What functions' agents set as ``GOVERNOR_VERDICT_KEY``: the public key of the
    workers' Ed25519 key (the shared secret itself for an HMAC key)."""
    return public_key(load_verdict_key(settings))


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
    if settings.verdict_key.startswith(PUBLIC.decode()):
        raise VerdictKeyError(
            "GOVERNOR_VERDICT_KEY holds a public key (ed25519-pub:…): workers and operators "
            "sign verdicts and need the private key (ed25519:<id>:<seed>); functions get the "
            "public one")
    if settings.verdict_key.startswith(PRIVATE.decode()):
        try:
            public_key(settings.verdict_key.encode())
        except SignatureError as exc:
            raise VerdictKeyError(f"GOVERNOR_VERDICT_KEY: {exc}") from None
        return settings.verdict_key.encode()
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
        path.write_text(new_private_key(KEY_ID).decode())
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


def checking_key(settings: Settings) -> bytes:
    """The key signed records (control records, verdicts) are checked with: a public
    keyring set in ``GOVERNOR_VERDICT_KEY`` as it is (an operator who only reads),
    else the signing key of :func:`load_verdict_key`."""
    if settings.verdict_key.startswith(PUBLIC.decode()):
        return settings.verdict_key.encode()
    return load_verdict_key(settings)


TELEMETRY_KEY_FILE = "telemetry.key"
"""The telemetry key's file in the data dir (written by the embedded stack)."""


def load_telemetry_keys(settings: Settings, *, create: bool = False) -> dict[bytes, bytes] | None:
    """The telemetry keys (key id → secret) functions' keys are derived from; ``None``
    when telemetry is not authenticated (``GOVERNOR_TELEMETRY_AUTH``).
    ``GOVERNOR_TELEMETRY_KEY`` when set, else the key file in the data dir, which
    ``create`` (the embedded stack only) writes.

    Raises :class:`~streams.errors.TelemetryKeyError` naming how to set one.
    """
    if not settings.authenticates_telemetry:
        return None
    text = settings.telemetry_key
    path = settings.data_dir / TELEMETRY_KEY_FILE
    if not text:
        if create and not path.exists():
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{KEY_ID}:{secrets.token_urlsafe(32)}")
            path.chmod(0o600)
        try:
            text = path.read_text().strip()
        except OSError:
            raise TelemetryKeyError(
                "no telemetry key: set GOVERNOR_TELEMETRY_KEY=<key id>:<secret> on every "
                "worker (e.g. `prod-1:` followed by the output of `python -c \"import secrets; "
                "print(secrets.token_hex(32))\"`) and give each function its own key "
                "(`governor keys function NAME`), or set GOVERNOR_TELEMETRY_AUTH=off to "
                "trust telemetry by the name it claims") from None
    try:
        keys = parse_telemetry_keys(text)
    except ValueError as exc:
        raise TelemetryKeyError(str(exc)) from None
    return keys


def function_key_for(settings: Settings, function: str, team: str = "") -> str:
    """``GOVERNOR_FUNCTION_KEY`` for ``function`` (of ``team``: the key vouches for it):
    derived from the current (first) telemetry key."""
    keys = load_telemetry_keys(settings)
    if keys is None:
        raise TelemetryKeyError("GOVERNOR_TELEMETRY_AUTH is off: functions need no key")
    key_id, secret = next(iter(keys.items()))
    return function_key(key_id, secret, function, team).decode()


def parse_telemetry_keys(text: str) -> dict[bytes, bytes]:
    """``<key id>:<secret>[,<key id>:<secret>…]`` → key id → secret; the first is the
    one new function keys are derived from. ValueError naming what is wrong."""
    keys: dict[bytes, bytes] = {}
    for item in text.split(","):
        key_id, sep, secret = item.strip().partition(":")
        if not sep or not key_id or len(secret) < 32:
            raise ValueError("GOVERNOR_TELEMETRY_KEY is <key id>:<secret of at least 32 "
                             "characters>[,<key id>:<secret>…]")
        keys[key_id.encode()] = secret.encode()
    return keys


def load_state_key(settings: Settings, *, create: bool = False) -> bytes:
    """The key the workers' state snapshots are authenticated with; ``create`` (the
    embedded stack only) writes a new random one into the data dir when there is none.

    Raises :class:`~streams.errors.StateKeyError` naming how to set one.
    """
    key = settings.state_key
    path = settings.data_dir / STATE_KEY_FILE
    if not key:
        if create and not path.exists():
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_hex(32))
            path.chmod(0o600)
        try:
            key = path.read_text().strip()
        except OSError:
            key = ""
    where = "GOVERNOR_STATE_KEY" if settings.state_key else str(path)
    if not key:
        raise StateKeyError(
            f"no state key: set GOVERNOR_STATE_KEY on every worker (and nowhere else) to "
            f"the same random secret, e.g. `python -c \"import secrets; "
            f"print(secrets.token_hex(32))\"`, or run in the data dir of `governor up`, "
            f"which keeps one in {path}")
    weak = _weak(key)
    if weak:
        raise StateKeyError(
            f"{where} is {weak}: anyone who guesses it can write state every worker "
            "restores. Set a random secret of at least 32 characters, e.g. "
            "`python -c \"import secrets; print(secrets.token_hex(32))\"`")
    if key == (settings.verdict_key.strip() or _read(settings, KEY_FILE)):
        raise StateKeyError(
            f"{where} is the verdict key: functions may hold that one; give the workers "
            "a state key of their own")
    try:
        telemetry = parse_telemetry_keys(settings.telemetry_key.strip()
                                         or _read(settings, TELEMETRY_KEY_FILE))
    except ValueError:
        telemetry = {}
    if key.encode() in telemetry.values():
        raise StateKeyError(f"{where} is a telemetry key: give the workers' state a key of "
                            "its own")
    return key.encode()


def _read(settings: Settings, name: str) -> str:
    """A key file of the data dir ("" when there is none)."""
    try:
        return (settings.data_dir / name).read_text().strip()
    except OSError:
        return ""
