"""The worker side's error tree.

    GovernorError (agents)
    └── StreamsError
        ├── SettingsError        a GOVERNOR_* variable has a bad value
        │   ├── VerdictKeyError  no verdict key is set (none may be made here), or a weak one
        │   └── StateKeyError    no state key is set (none may be made here), or a weak one
        ├── StackError           the embedded broker or engine could not start
        ├── MigrationError       a ClickHouse migration failed or was edited after applying
        ├── QueryError           a query was refused or failed
        ├── SnapshotError        a saved decision state is refused (its reason: format,
        │   │                    pickle, size, key, function or shape)
        │   └── StateError       …of the wrong shape (streams.state)
        ├── PolicyError          a policy bundle is malformed (path:line: message)
        ├── ThresholdError       a threshold key, value or scope is not acceptable
        ├── ControlError         an operator command could not be carried out
        ├── ManifestError        a deployment manifest is malformed (path:line: expected …)
        ├── GateError            the pre-deploy gate cannot run (a git base, an option)
        └── BenchmarkError       a benchmark's data, labels or detector name is unusable
"""

from __future__ import annotations

from agents import GovernorError


class StreamsError(GovernorError):
    """Root of the worker side's errors."""


class SettingsError(StreamsError, ValueError):
    """A setting has a value the worker cannot use; the message names it."""


class VerdictKeyError(SettingsError):
    """No verdict key, or a weak one: the message says how to set one."""


class StateKeyError(SettingsError):
    """No state key, a weak one, or the verdict key reused: the message says what to set."""


class TelemetryKeyError(SettingsError):
    """No usable telemetry key while telemetry authentication is on."""


class StackError(StreamsError):
    """The embedded broker or ClickHouse engine could not be started or reached."""


class MigrationError(StreamsError):
    """A ClickHouse migration failed, or an applied one was changed afterwards."""


class QueryError(StreamsError):
    """An analyst query was refused (not read-only) or failed in ClickHouse."""


class BenchmarkError(StreamsError):
    """A benchmark cannot run: its data or labels are missing or malformed, or its
    detector is unknown; the message names the file and row, or the known names."""


class SnapshotError(StreamsError):
    """A snapshot of decision state is refused; ``reason`` names the check it failed
    (one word, counted as ``snapshots_refused_<reason>``), the message says how."""

    reason = "format"

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        if reason:
            self.reason = reason


class PolicyError(StreamsError):
    """A policy bundle cannot be used: a policy or data file is malformed, or the
    bundle has no entry rule. The message starts with ``path:line:`` and says what to do."""


class ThresholdError(StreamsError, ValueError):
    """A threshold key, value or scope is not acceptable; the message says what is."""


class ControlError(StreamsError):
    """An operator command could not be carried out; the message says why."""


class ManifestError(StreamsError):
    """A deployment manifest cannot be read; the message starts with ``path:line:`` and
    says what was expected there."""


class GateError(StreamsError):
    """The pre-deploy gate cannot run: a git base revision or an option is unusable;
    the message says which and how to fix it."""
