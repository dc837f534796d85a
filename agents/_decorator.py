"""``@govern``: one span and one cost event per invocation, verdicts enforced.

Options resolve argument → environment (``GOVERNOR_*``) → Lambda context →
default, once per process on the first call. The hot path starts an
:class:`~agents._span.InvocationSpan`, checks the verdict cache (a dictionary lookup),
runs the handler and queues the finished invocation; pricing and event building happen
on the export thread.

The agent never breaks its host: every step it takes around the handler is guarded,
and a fault in one is counted (``agents.stats()["agent_faults"]``), logged once per
kind, and the handler runs (or its result or exception passes) exactly as without
the agent. Only a verdict refuses a call — and, with ``fail_closed``, a configuration
error.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import logging
import os
import time
import traceback
from collections.abc import Callable
from typing import Any, TypeVar, cast, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from agents import _runtime as _runtime_module
from agents._context import Invocation, current
from agents._errors import (
    ConfigurationError,
    FunctionBlocked,
    FunctionIsolated,
    FunctionThrottled,
)
from agents._runtime import Runtime, get_runtime
from agents._span import InvocationSpan
from agents._wire import resource_fragment
from schemas import Outcome

log = logging.getLogger("governor.agent")
F = TypeVar("F", bound=Callable[..., Any])
State = tuple[Any, Any, Any, Invocation, bool, str, str, int, str]
Fallback = Callable[[FunctionBlocked, Any], Any]
_propagator = TraceContextTextMapPropagator()
_RAISE = object()
_set_span_in_context = trace.set_span_in_context
_get_current_span = trace.get_current_span
_attach, _detach = otel_context.attach, otel_context.detach
_perf_counter_ns = time.perf_counter_ns
_environ = os.environ
_faults_logged: set[tuple[str, str]] = set()


def _fault(stage: str, exc: BaseException) -> None:
    """Count an agent fault and log its kind once; never raises."""
    try:
        runtime = _runtime_module._runtime
        if runtime is not None:
            runtime.stats.add("agent_faults")
        key = (stage, type(exc).__name__)
        if key not in _faults_logged:
            _faults_logged.add(key)
            log.warning("Governor agent fault in %s (%s: %s); the handler was not affected. "
                        "Later faults of this kind are counted in agents.stats()"
                        "['agent_faults'], not logged.", stage, type(exc).__name__, exc,
                        exc_info=exc)
    except Exception:
        pass


def http_fallback(blocked: FunctionBlocked, event: Any) -> dict[str, Any]:
    """An API-gateway response for a blocked call: 429 when throttled, 503 when
    isolated, with ``Retry-After``. Use as ``@govern(fallback=agents.http_fallback)``."""
    throttled = isinstance(blocked, FunctionThrottled)
    retry = 1 if throttled else max(1, int((blocked.until_unix_nano - time.time_ns()) / 1e9))
    return {"statusCode": 429 if throttled else 503,
            "headers": {"Retry-After": str(retry), "Content-Type": "application/json"},
            "body": f'{{"message": "{"throttled" if throttled else "unavailable"}"}}'}


class _Bound:
    """One governed function, resolved against one runtime."""

    __slots__ = ("cold", "count_egress", "fail_closed", "fallback", "flush_s", "function",
                 "handoff", "in_lambda", "memory_mb", "next_id", "price", "provider",
                 "resource_json", "runtime", "team", "version")

    def __init__(self, runtime: Runtime, options: dict[str, Any], handler: Callable[..., Any],
                 context: Any) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.function = str(options["function"] or settings.function
                            or getattr(context, "function_name", None)
                            or settings.platform_function or handler.__name__)
        self.version = str(options["version"] or settings.version
                           or getattr(context, "function_version", None)
                           or ("$LATEST" if settings.platform_function else "unknown"))
        self.team = str(options["team"] or settings.team)
        self.memory_mb = int(options["memory_mb"] or settings.memory_mb
                             or getattr(context, "memory_limit_in_mb", None) or 128)
        self.provider = str(options["provider"] or settings.provider)
        if self.provider not in runtime.prices:
            raise ConfigurationError(f"provider {self.provider!r} has no price list; known: "
                                     f"{', '.join(runtime.prices)} (or add it with "
                                     "GOVERNOR_PRICES_FILE)")
        self.price = runtime.prices[self.provider]
        self.count_egress = bool(options["egress"] if options["egress"] is not None
                                 else settings.egress)
        if self.count_egress:
            from agents import _egress

            _egress.install()
        self.fail_closed = bool(options["fail_closed"] if options["fail_closed"] is not None
                                else settings.fail_closed)
        self.fallback = options["fallback"]
        self.flush_s = (settings.flush_timeout_ms / 1000.0
                        if settings.flush_on_return and not runtime.handoff else 0.0)
        self.handoff = runtime.handoff
        self.in_lambda = bool(settings.platform_function)  # where an X-Ray trace is set
        self.resource_json = resource_fragment(_resource(self, options, settings.tenant,
                                                         context))
        runtime.watch(self.function)
        self.cold = True
        prefix = f"{self.function}-{os.getpid()}-"
        self.next_id = (prefix + str(n) for n in itertools.count()).__next__

    def start(self, args: tuple[Any, ...]) -> State:
        event = args[0] if args else None
        context = args[1] if len(args) > 1 else None
        invocation_id = getattr(context, "aws_request_id", None) or self.next_id()
        cold, self.cold = self.cold, False
        parent = _get_current_span().get_span_context()  # a governed caller in-process
        trigger = "other"
        if type(event) is dict:
            trigger = _trigger(event)
            carrier = _carrier(event)
            if carrier is not None:
                parent = _get_current_span(_propagator.extract(carrier)).get_span_context()
        # Per-invocation attributes (faas.invocation_id, faas.coldstart, faas.trigger) and
        # the X-Ray link are added when the span is exported, off the hot path.
        span = InvocationSpan(self.function, parent if parent.is_valid else None)
        invocation = Invocation(self.function, self.count_egress, None)
        return (span, _attach(_set_span_in_context(span)), current.set(invocation), invocation,
                cold, invocation_id, trigger, _perf_counter_ns(),
                _environ.get("_X_AMZN_TRACE_ID", "") if self.in_lambda else "")

    def gate(self) -> Any:
        """Raise if a verdict (or fail-closed) refuses the call; return its egress policy."""
        if self.fail_closed and not self.runtime.in_sync():
            raise FunctionIsolated(self.function, "fail-closed: verdicts not known or stale",
                                   time.time_ns())
        return self.runtime.verdicts.check(self.function)

    def finish(self, state: State, error: BaseException | None) -> None:
        (span, token, invocation_token, invocation, cold, invocation_id, trigger, started,
         xray) = state
        duration_ms = (_perf_counter_ns() - started) / 1e6
        current.reset(invocation_token)
        outcome = Outcome.OK
        if error is not None:
            if isinstance(error, FunctionBlocked) and error.function == self.function:
                outcome = (Outcome.THROTTLED if isinstance(error, FunctionThrottled)
                           else Outcome.ISOLATED)
                span.set_attribute("governor.blocked", outcome.value)
                span.set_status(Status(StatusCode.ERROR, str(error)))
            else:
                outcome = Outcome.ERROR
                # as the SDK's record_exception, with escaped a boolean (the SDK writes
                # the string "True"): it leaves the handler
                span.add_event("exception", {
                    "exception.type": type(error).__name__,
                    "exception.message": str(error),
                    "exception.stacktrace": "".join(traceback.format_exception(error)),
                    "exception.escaped": True})
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        if invocation.hosts:
            span.set_attribute("governor.egress.hosts", ",".join(sorted(invocation.hosts)))
        span.end()
        _detach(token)
        runtime = self.runtime
        flush_ms = 0.0
        if self.flush_s:  # earlier invocations' telemetry; its time is billed to this one
            flushing = _perf_counter_ns()
            runtime.flush_on_return(self.flush_s)
            flush_ms = (_perf_counter_ns() - flushing) / 1e6
        runtime.processor.offer((self, span, invocation_id, cold, trigger, outcome,
                                 duration_ms + flush_ms, invocation.custom,
                                 invocation.egress_bytes, xray))
        if self.flush_s or self.handoff:
            runtime.processor.kick()  # handed on before the platform freezes us

    def blocked(self, exc: FunctionBlocked, args: tuple[Any, ...]) -> Any:
        fallback = self.fallback
        if fallback is _RAISE:
            raise exc
        return fallback(exc, args[0] if args else None) if callable(fallback) else fallback


def _resource(b: _Bound, options: dict[str, Any], tenant_setting: str,
              context: Any) -> dict[str, Any]:
    provider = b.provider.split("-")[0]
    resource = {
        "service.name": b.function, "service.version": b.version,
        "faas.name": b.function, "faas.version": b.version,
        "faas.max_memory": b.memory_mb * 1024 * 1024,
        "cloud.provider": {"aws": "aws", "gcp": "gcp", "azure": "azure"}.get(provider, provider),
        "cloud.platform": {"aws": "aws_lambda", "gcp": "gcp_cloud_functions",
                           "azure": "azure_functions"}.get(provider, provider),
        "governor.team": b.team, "governor.tenant": str(options["tenant"] or tenant_setting),
    }
    settings = b.runtime.settings
    if settings.region:
        resource["cloud.region"] = settings.region
    if settings.instance:
        resource["faas.instance"] = settings.instance
    arn = getattr(context, "invoked_function_arn", None)
    if isinstance(arn, str):
        resource["cloud.resource_id"] = arn
        parts = arn.split(":")
        if len(parts) > 4:
            resource["cloud.account.id"] = parts[4]
    return resource


def _carrier(event: dict[str, Any]) -> dict[str, str] | None:
    """The W3C trace context an event carries, keys lower-cased: HTTP headers in any
    case (API Gateway v1 and v2, ALB, function URLs; multi-value headers too), else the
    first record's message attributes (SQS, SNS), else an EventBridge event's
    ``detail``; None when there is no ``traceparent``."""
    carrier: dict[str, str] = {}
    headers = event.get("headers")
    if type(headers) is dict:
        carrier = {k.lower(): v for k, v in headers.items()
                   if type(k) is str and type(v) is str}
    multi = event.get("multiValueHeaders")
    if type(multi) is dict:
        for k, v in multi.items():
            if type(k) is str and type(v) is list and v and type(v[0]) is str:
                carrier.setdefault(k.lower(), v[0])
    if "traceparent" in carrier:
        return carrier
    records = event.get("Records")
    if type(records) is list and records and type(records[0]) is dict:
        record = records[0]
        sns = record.get("Sns")
        attributes, value = record.get("messageAttributes"), "stringValue"  # SQS
        if type(sns) is dict:
            attributes, value = sns.get("MessageAttributes"), "Value"
        if type(attributes) is dict:
            carrier = {k.lower(): a[value] for k, a in attributes.items()
                       if type(k) is str and type(a) is dict and type(a.get(value)) is str}
    detail = event.get("detail")
    if "traceparent" not in carrier and type(detail) is dict:
        carrier = {k.lower(): v for k, v in detail.items()
                   if type(k) is str and type(v) is str}
    return carrier if "traceparent" in carrier else None


def _trigger(event: dict[str, Any]) -> str:
    if "httpMethod" in event or "requestContext" in event or "headers" in event:
        return "http"
    records = event.get("Records")
    if isinstance(records, list) and records and isinstance(records[0], dict):
        source = str(records[0].get("eventSource") or records[0].get("EventSource") or "")
        return "datasource" if source in ("aws:s3", "aws:dynamodb") else "pubsub"
    if event.get("source") == "aws.events":
        return "timer"
    return "other"


def _finish(b: _Bound, state: State, error: BaseException | None) -> None:
    try:
        b.finish(state, error)
    except Exception as exc:
        _fault("finish", exc)


def _fail_closed_env() -> bool:
    return _environ.get("GOVERNOR_FAIL_CLOSED", "").strip().lower() in ("1", "true", "yes", "on")


@overload
def govern(handler: F) -> F: ...


@overload
def govern(
    *, function: str | None = ..., version: str | None = ..., team: str | None = ...,
    memory_mb: int | None = ..., provider: str | None = ..., tenant: str | None = ...,
    egress: bool | None = ..., fail_closed: bool | None = ..., fallback: Any = ...,
) -> Callable[[F], F]: ...


def govern(
    handler: Any = None, *, function: str | None = None, version: str | None = None,
    team: str | None = None, memory_mb: int | None = None, provider: str | None = None,
    tenant: str | None = None, egress: bool | None = None, fail_closed: bool | None = None,
    fallback: Any = _RAISE,
) -> Any:
    """Govern a handler: ``@govern`` or ``@govern(function="checkout", memory_mb=512)``.

    Works on ``handler(event, context)`` Lambda handlers, plain callables and
    ``async def`` handlers. When a verdict blocks a call it raises
    :class:`agents.FunctionIsolated` / :class:`agents.FunctionThrottled`, or returns
    ``fallback`` instead (a value, or ``fallback(blocked, event)`` if callable, e.g.
    :func:`agents.http_fallback`). Exceptions from the handler propagate unchanged.
    ``egress=True`` counts outbound bytes; ``fail_closed=True`` refuses calls while
    the verdicts are unknown or stale.
    """
    options = {"function": function, "version": version, "team": team,
               "memory_mb": memory_mb, "provider": provider, "tenant": tenant,
               "egress": egress, "fail_closed": fail_closed, "fallback": fallback}

    def decorate(fn: F) -> F:
        bound: list[_Bound] = []
        broken: list[Any] = []  # the runtime a binding failed on: run bare until it changes

        def resolve(args: tuple[Any, ...]) -> _Bound | None:
            if bound and bound[0].runtime is _runtime_module._runtime:
                return bound[0]  # the hot path: bound to the live runtime already
            if broken and broken[0] is _runtime_module._runtime:
                return None
            try:
                runtime = get_runtime()
                if runtime.settings.disabled:
                    return None
                context = args[1] if len(args) > 1 else None
                bound[:] = [_Bound(runtime, options, fn, context)]
            except ConfigurationError as exc:
                if options["fail_closed"] or _fail_closed_env():
                    raise
                _fault("configuration", exc)
                broken[:] = [_runtime_module._runtime]
                return None
            except Exception as exc:
                _fault("setup", exc)
                broken[:] = [_runtime_module._runtime]
                return None
            return bound[0]

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                b = resolve(args)
                if b is None:
                    return await fn(*args, **kwargs)
                try:
                    state = b.start(args)
                except Exception as exc:
                    _fault("start", exc)
                    return await fn(*args, **kwargs)
                try:
                    state[3].allow = b.gate()
                except FunctionBlocked as blocked:
                    _finish(b, state, blocked)
                    return b.blocked(blocked, args)
                except Exception as exc:
                    _fault("gate", exc)
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    _finish(b, state, exc)
                    raise
                _finish(b, state, None)
                return result
            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            b = resolve(args)
            if b is None:
                return fn(*args, **kwargs)
            try:
                state = b.start(args)
            except Exception as exc:
                _fault("start", exc)
                return fn(*args, **kwargs)
            try:
                state[3].allow = b.gate()
            except FunctionBlocked as blocked:
                _finish(b, state, blocked)
                return b.blocked(blocked, args)
            except Exception as exc:
                _fault("gate", exc)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                _finish(b, state, exc)
                raise
            _finish(b, state, None)
            return result
        return cast(F, wrapper)

    return decorate(handler) if handler is not None else decorate
