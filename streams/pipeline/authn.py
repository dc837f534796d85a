"""Telemetry authenticity: a record counts as function X's only with X's MAC.

Each telemetry record carries ``governor-auth: <key id>:<MAC>`` (see
:mod:`agents._auth`); the MAC is made with X's key, derived from the workers' telemetry
key, X's name and (for a key given with ``--team``) X's team. :class:`TelemetryAuth`
derives the key of the function a record names and checks it. A record without a
header, under an unknown key id or with a MAC that does not match is still stored
(flagged ``unauthenticated``) and counted, but decides nothing: a function (or anything
else that can produce to the topic) cannot get another function throttled or isolated.
A record whose key vouches for its function but not for the team it claims counts
without the team (:meth:`TelemetryAuth.vouched`), so no function adds its spend to
another team's budget.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping, Sequence

from agents._auth import HEADER, MacKey, derive

Headers = Sequence[tuple[str, bytes | None]] | None

_MAX_CACHED = 100_000
log = logging.getLogger("governor.authn")


class TelemetryAuth:
    """Checks telemetry records against the telemetry keys ``keys`` (key id → secret);
    derived function keys are cached."""

    def __init__(self, keys: Mapping[bytes, bytes]) -> None:
        if not keys:
            raise ValueError("at least one telemetry key is needed")
        self._keys = dict(keys)
        self._derived: dict[bytes, dict[tuple[str, str], MacKey]] = {
            key_id: {} for key_id in keys}
        self._warned: set[str] = set()
        self._unvouched: set[str] = set()

    def vouched(self, function: str, value: bytes, headers: Headers, team: str = "") -> bool:
        """Whether the record's MAC is made with the key of ``function`` of ``team`` (for
        ``""``: the function's key that vouches for no team)."""
        for name, sealed in headers or ():
            if name != HEADER:
                continue
            key_id, _, given = (sealed or b"").partition(b":")
            derived = self._derived.get(key_id)
            if derived is None:
                return False
            key = derived.get((function, team)) or self._derive(key_id, function, team)
            return hmac.compare_digest(key(value), given)
        return False  # the first governor-auth header is the one (as in :meth:`problem`)

    def unvouched_team(self, function: str, team: str) -> None:
        """Log, once per function, that its key does not vouch for the team it claims."""
        if function not in self._unvouched and len(self._unvouched) < _MAX_CACHED:
            self._unvouched.add(function)
            log.warning("telemetry of %r claims team %r, which its key does not vouch for: "
                        "decided and stored without a team (no team budget or right applies "
                        "to it); give the function `governor keys function NAME --team TEAM`",
                        function, team)

    def authentic(self, function: str, value: bytes, headers: Headers) -> bool:
        """Whether the record is ``function``'s (its key vouching for no team); the first
        refusal per function is logged with its reason."""
        if self.vouched(function, value, headers):
            return True
        problem = self.problem(function, value, headers)
        if problem is None:
            return True
        if function not in self._warned and len(self._warned) < _MAX_CACHED:
            self._warned.add(function)
            log.warning("telemetry naming %r is not authenticated as it (%s): stored flagged "
                        "unauthenticated, decides nothing; further refusals for it are only "
                        "counted", function, problem)
        return False

    def problem(self, function: str, value: bytes, headers: Headers) -> str | None:
        """Why the record ``value`` (with ``headers``) is not ``function``'s, or ``None``."""
        sealed = next((v for k, v in headers or () if k == HEADER), None)
        if not sealed:
            return "no governor-auth header (the function has no GOVERNOR_FUNCTION_KEY)"
        key_id, _, given = sealed.partition(b":")
        if key_id not in self._keys:
            return f"unknown telemetry key id {key_id.decode(errors='replace')[:64]!r}"
        key = self._derived[key_id].get((function, "")) or self._derive(key_id, function, "")
        if not hmac.compare_digest(key(value), given):
            return f"MAC does not match the key of {function!r} (another function's key, " \
                   "or altered)"
        return None

    def _derive(self, key_id: bytes, function: str, team: str) -> MacKey:
        """``function``'s (``team``'s) key under ``key_id``, cached (the cache is
        bounded)."""
        derived = self._derived[key_id]
        if len(derived) >= _MAX_CACHED:
            derived.clear()
        key = derived[function, team] = MacKey(derive(self._keys[key_id], function, team))
        return key
