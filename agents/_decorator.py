"""``@govern``: one span and one cost event per invocation, verdicts enforced.

Options resolve argument → environment (``GOVERNOR_*``) → Lambda context →
default, once per process on the first call.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from agents._cost import PRICES, _custom
from agents._errors import ConfigurationError, FunctionBlocked, FunctionThrottled
from agents._runtime import Runtime, get_runtime
from schemas import CostEvent, Outcome

F = TypeVar("F", bound=Callable[..., Any])
_propagator = TraceContextTextMapPropagator()


class _Bound:
    """One governed function, resolved against one runtime."""

    __slots__ = ("calls", "cold", "function", "memory_mb", "price", "provider", "runtime",
                 "team", "tracer", "version")

    def __init__(self, runtime: Runtime, options: dict[str, Any], handler: Callable[..., Any],
                 context: Any) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.function = str(options["function"] or settings.function
                            or getattr(context, "function_name", None)
                            or os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or handler.__name__)
        self.version = str(options["version"] or settings.version
                           or getattr(context, "function_version", None) or "$LATEST")
        self.team = str(options["team"] or settings.team)
        self.memory_mb = int(options["memory_mb"] or settings.memory_mb
                             or getattr(context, "memory_limit_in_mb", None) or 128)
        self.provider = str(options["provider"] or settings.provider)
        if self.provider not in PRICES:
            raise ConfigurationError(
                f"provider {self.provider!r} has no price list; known: {', '.join(PRICES)}")
        self.price = PRICES[self.provider]
        tenant = str(options["tenant"] or settings.tenant)
        self.tracer = runtime.tracer(self.function, {
            "service.name": self.function,
            "service.version": self.version,
            "faas.name": self.function,
            "faas.version": self.version,
            "faas.max_memory": self.memory_mb * 1024 * 1024,
            "cloud.provider": self.provider.split("-")[0],
            "governor.team": self.team,
            "governor.tenant": tenant,
        })
        self.cold = True
        self.calls = itertools.count()

    def start(self, args: tuple[Any, ...]) -> tuple[Any, Any, str, bool, dict[str, float], int]:
        event = args[0] if args else None
        context = args[1] if len(args) > 1 else None
        invocation_id = str(getattr(context, "aws_request_id", None)
                            or f"{self.function}-{os.getpid()}-{next(self.calls)}")
        cold, self.cold = self.cold, False
        parent = None
        if isinstance(event, dict):
            headers = event.get("headers")
            if isinstance(headers, dict) and "traceparent" in headers:
                parent = _propagator.extract(headers)
        span = self.tracer.start_span(self.function, context=parent, kind=SpanKind.SERVER,
                                      attributes={"faas.invocation_id": invocation_id,
                                                  "faas.coldstart": cold,
                                                  "faas.trigger": _trigger(event)})
        token = otel_context.attach(trace.set_span_in_context(span))
        custom: dict[str, float] = {}
        custom_token = _custom.set(custom)
        return span, (token, custom_token), invocation_id, cold, custom, time.perf_counter_ns()

    def finish(self, state: tuple[Any, Any, str, bool, dict[str, float], int],
               error: BaseException | None) -> None:
        span, (token, custom_token), invocation_id, cold, custom, started = state
        duration_ms = (time.perf_counter_ns() - started) / 1e6
        _custom.reset(custom_token)
        outcome = Outcome.OK
        if isinstance(error, FunctionBlocked):
            throttled = isinstance(error, FunctionThrottled)
            outcome = Outcome.THROTTLED if throttled else Outcome.ISOLATED
            span.set_status(Status(StatusCode.ERROR, str(error)))
            span.set_attribute("governor.blocked", outcome.value)
        elif error is not None:
            outcome = Outcome.ERROR
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        bill = self.price.invocation(duration_ms=duration_ms, memory_mb=self.memory_mb)
        total = bill.compute_usd + bill.request_usd + bill.egress_usd + sum(custom.values())
        span.set_attribute("governor.cost.usd", total)
        ctx = span.get_span_context()
        span.end()
        otel_context.detach(token)
        runtime = self.runtime
        runtime.processor.offer(CostEvent(
            function=self.function, invocation_id=invocation_id,
            trace_id=f"{ctx.trace_id:032x}", span_id=f"{ctx.span_id:016x}",
            provider=self.provider, version=self.version, team=self.team,
            memory_mb=self.memory_mb, duration_ms=duration_ms,
            billed_duration_ms=bill.billed_duration_ms, cold_start=cold, outcome=outcome,
            cost_usd=total, compute_usd=bill.compute_usd, request_usd=bill.request_usd,
            egress_usd=bill.egress_usd, custom_usd=custom))
        if runtime.settings.flush_on_return:
            runtime.flush(runtime.settings.flush_timeout_ms / 1000.0)


def _trigger(event: Any) -> str:
    if isinstance(event, dict):
        if "httpMethod" in event or "requestContext" in event or "headers" in event:
            return "http"
        records = event.get("Records")
        if isinstance(records, list) and records and isinstance(records[0], dict):
            source = str(records[0].get("eventSource") or records[0].get("EventSource") or "")
            return "datasource" if source in ("aws:s3", "aws:dynamodb") else "pubsub"
        if event.get("source") == "aws.events":
            return "timer"
    return "other"


@overload
def govern(handler: F) -> F: ...


@overload
def govern(
    *, function: str | None = ..., version: str | None = ..., team: str | None = ...,
    memory_mb: int | None = ..., provider: str | None = ..., tenant: str | None = ...,
) -> Callable[[F], F]: ...


def govern(
    handler: Any = None, *, function: str | None = None, version: str | None = None,
    team: str | None = None, memory_mb: int | None = None, provider: str | None = None,
    tenant: str | None = None,
) -> Any:
    """Govern a handler: ``@govern`` or ``@govern(function="checkout", memory_mb=512)``.

    Works on ``handler(event, context)`` Lambda handlers, plain callables and
    ``async def`` handlers. Raises :class:`agents.FunctionIsolated` or
    :class:`agents.FunctionThrottled` only when a verdict blocks the call;
    exceptions from the handler propagate unchanged.
    """
    options = {"function": function, "version": version, "team": team,
               "memory_mb": memory_mb, "provider": provider, "tenant": tenant}

    def decorate(fn: F) -> F:
        bound: list[_Bound] = []

        def resolve(args: tuple[Any, ...]) -> _Bound | None:
            runtime = get_runtime()
            if runtime.settings.disabled:
                return None
            if not bound or bound[0].runtime is not runtime:
                context = args[1] if len(args) > 1 else None
                bound[:] = [_Bound(runtime, options, fn, context)]
            return bound[0]

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                b = resolve(args)
                if b is None:
                    return await fn(*args, **kwargs)
                state = b.start(args)
                try:
                    b.runtime.verdicts.check(b.function)
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    b.finish(state, exc)
                    raise
                b.finish(state, None)
                return result
            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            b = resolve(args)
            if b is None:
                return fn(*args, **kwargs)
            state = b.start(args)
            try:
                b.runtime.verdicts.check(b.function)
                result = fn(*args, **kwargs)
            except BaseException as exc:
                b.finish(state, exc)
                raise
            b.finish(state, None)
            return result
        return cast(F, wrapper)

    return decorate(handler) if handler is not None else decorate

