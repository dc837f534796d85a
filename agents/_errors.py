"""The agent's error tree.

    GovernorError
    ├── FunctionBlocked            a verdict refused this call
    │   ├── FunctionIsolated       the function is isolated
    │   └── FunctionThrottled      over the throttle rate for this instance
    ├── EgressBlocked              a verdict's egress allow-list refused a connection
    │                              (also a PermissionError)
    └── ConfigurationError         a GOVERNOR_* setting or @govern argument is invalid

Errors from Governor's own telemetry never reach the handler: only the verdict
errors above do, and only when a verdict says so.
"""

from __future__ import annotations


class GovernorError(Exception):
    """Root of every error the agent raises."""


class ConfigurationError(GovernorError, ValueError):
    """A setting has a value the agent cannot use; the message names it."""


class FunctionBlocked(GovernorError):
    """A verdict from the control plane refused this invocation."""

    def __init__(self, function: str, reason: str, until_unix_nano: int) -> None:
        self.function = function
        self.reason = reason
        self.until_unix_nano = until_unix_nano
        super().__init__(self._describe())

    def _describe(self) -> str:
        return f"{self.function} is blocked by Governor: {self.reason}"


class FunctionIsolated(FunctionBlocked):
    """The function is isolated: every call is refused until release or expiry."""

    def _describe(self) -> str:
        return f"{self.function} is isolated by Governor: {self.reason}"


class FunctionThrottled(FunctionBlocked):
    """The call exceeded the per-instance rate a throttle verdict allows."""

    def __init__(self, function: str, reason: str, until_unix_nano: int, limit_rps: float) -> None:
        self.limit_rps = limit_rps
        super().__init__(function, reason, until_unix_nano)

    def _describe(self) -> str:
        return f"{self.function} is throttled by Governor to {self.limit_rps:g} rps: {self.reason}"


class EgressBlocked(GovernorError, PermissionError):
    """A connection to a destination outside the verdict's egress allow-list."""

    def __init__(self, function: str, destination: str, allowed: tuple[str, ...]) -> None:
        self.function = function
        self.destination = destination
        self.allowed = allowed
        super().__init__(f"{function}: egress to {destination} is blocked by Governor; "
                         f"allowed: {', '.join(allowed) or 'nothing'}")
