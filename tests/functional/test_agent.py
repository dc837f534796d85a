"""The agent in-process: telemetry through the in-memory exporter, verdicts offered
directly to the cache (no broker needed)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import agents
from schemas import Action, CostEvent, Outcome, Span, Verdict, now_ns, sign_verdict

KEY = b"functional-key"


@pytest.fixture
def exporter() -> Iterator[agents.InMemoryExporter]:
    memory = agents.InMemoryExporter()
    agents.configure(agents.AgentSettings(verdict_key=KEY), memory)
    yield memory
    agents.shutdown(1.0)


def _verdict(function: str, action: Action, sequence: int, rate_rps: float | None = None,
             key: bytes = KEY, expires_in_s: float = 60) -> Verdict:
    return sign_verdict(Verdict(function=function, action=action, rate_rps=rate_rps,
                                sequence=sequence, reason="test",
                                expires_at_unix_nano=now_ns() + int(expires_in_s * 1e9)), key)


def test_each_call_is_one_span_and_one_cost_event(exporter: agents.InMemoryExporter) -> None:
    @agents.govern(function="checkout", memory_mb=1024, team="payments", version="7")
    def handler(event: dict[str, str], context: object) -> str:
        agents.record_cost(2000, 0.000001, kind="llm_tokens")
        return event["id"]

    assert handler({"id": "a"}, None) == "a"
    assert handler({"id": "b"}, None) == "b"
    assert agents.flush()
    spans, costs = exporter.of_type(Span), exporter.of_type(CostEvent)
    assert len(spans) == len(costs) == 2
    first = costs[0]
    assert (first.function, first.team, first.version, first.memory_mb) == (
        "checkout", "payments", "7", 1024)
    assert first.cold_start and not costs[1].cold_start
    assert first.custom_usd == {"llm_tokens": pytest.approx(0.002)}
    assert first.cost_usd == pytest.approx(
        first.compute_usd + first.request_usd + first.egress_usd + 0.002)
    span = spans[0]
    assert span.resource["faas.max_memory"] == 1024 * 1024 * 1024
    assert span.resource["cloud.provider"] == "aws"
    assert span.attributes["faas.invocation_id"] == first.invocation_id
    assert span.attributes["governor.cost.usd"] == pytest.approx(first.cost_usd)
    assert (span.trace_id, span.span_id) == (first.trace_id, first.span_id)


def test_lambda_context_and_trace_context_are_used(exporter: agents.InMemoryExporter) -> None:
    @agents.govern
    def handler(event: dict[str, object], context: object) -> int:
        return 200

    context = SimpleNamespace(function_name="from-context", memory_limit_in_mb="2048",
                              aws_request_id="req-42", function_version="3")
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    handler({"httpMethod": "GET", "headers": {"traceparent": parent}}, context)
    agents.flush()
    [span] = exporter.of_type(Span)
    [cost] = exporter.of_type(CostEvent)
    assert (cost.function, cost.memory_mb, cost.invocation_id, cost.version) == (
        "from-context", 2048, "req-42", "3")
    assert span.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent_span_id == "b7ad6b7169203331"
    assert span.attributes["faas.trigger"] == "http"


def test_handler_exceptions_propagate_unchanged(exporter: agents.InMemoryExporter) -> None:
    class PaymentDeclined(Exception):
        pass

    error = PaymentDeclined("card expired")

    @agents.govern(function="pay")
    def handler(event: None, context: None) -> None:
        raise error

    with pytest.raises(PaymentDeclined) as raised:
        handler(None, None)
    assert raised.value is error
    agents.flush()
    [span] = exporter.of_type(Span)
    assert span.status_code.value == "Error"
    assert span.events[0].name == "exception"
    assert exporter.of_type(CostEvent)[0].outcome is Outcome.ERROR


def test_async_handlers_and_nested_spans(exporter: agents.InMemoryExporter) -> None:
    own = TracerProvider()
    tracer = own.get_tracer("app")
    seen: list[str] = []

    @agents.govern(function="async-fn")
    async def handler(event: None, context: None) -> str:
        with tracer.start_as_current_span("db.query") as child:
            seen.append(f"{child.get_span_context().trace_id:032x}")
            seen.append(f"{child.parent.span_id:016x}" if child.parent else "")
        await asyncio.sleep(0)
        return "done"

    assert asyncio.run(handler(None, None)) == "done"
    agents.flush()
    [span] = exporter.of_type(Span)
    assert seen == [span.trace_id, span.span_id]
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_verdicts_isolate_throttle_and_release(exporter: agents.InMemoryExporter) -> None:
    cache = agents.get_runtime().verdicts

    @agents.govern(function="svc")
    def handler() -> str:
        return "ok"

    assert cache.offer(_verdict("svc", Action.ISOLATE, 1))
    with pytest.raises(agents.FunctionIsolated):
        handler()
    assert cache.offer(_verdict("svc", Action.THROTTLE, 2, rate_rps=2))
    results = []
    for _ in range(20):
        try:
            results.append(handler())
        except agents.FunctionThrottled as exc:
            assert exc.limit_rps == 2
            results.append("throttled")
    assert results.count("ok") <= 3  # burst of 2 (+1 if a token refilled meanwhile)
    assert cache.offer(_verdict("svc", Action.RELEASE, 3))
    assert handler() == "ok"
    agents.flush()
    outcomes = {c.outcome for c in exporter.of_type(CostEvent)}
    assert outcomes == {Outcome.OK, Outcome.ISOLATED, Outcome.THROTTLED}


def test_invalid_verdicts_are_rejected_and_counted(exporter: agents.InMemoryExporter) -> None:
    cache = agents.get_runtime().verdicts
    assert cache.offer(_verdict("svc", Action.THROTTLE, 5, rate_rps=100))
    assert not cache.offer(_verdict("svc", Action.ISOLATE, 6, key=b"wrong"))
    assert not cache.offer(_verdict("svc", Action.ISOLATE, 7, expires_in_s=-1))
    assert not cache.offer(_verdict("svc", Action.ISOLATE, 5))
    assert not cache.offer_bytes(b'{"type": "verdict"}')
    stats = agents.stats()
    assert {k: v for k, v in stats.items() if k.startswith("verdicts_rejected")} == {
        "verdicts_rejected_forged": 1, "verdicts_rejected_expired": 1,
        "verdicts_rejected_replayed": 1, "verdicts_rejected_invalid": 1}
    current = cache.current("svc")
    assert current is not None and current.action is Action.THROTTLE


def test_a_verdict_stops_at_its_expiry(exporter: agents.InMemoryExporter) -> None:
    cache = agents.get_runtime().verdicts

    @agents.govern(function="short")
    def handler() -> str:
        return "ok"

    assert cache.offer(_verdict("short", Action.ISOLATE, 1, expires_in_s=0.2))
    with pytest.raises(agents.FunctionIsolated):
        handler()
    time.sleep(0.25)
    assert handler() == "ok"


def test_without_a_key_every_verdict_is_rejected() -> None:
    agents.configure(agents.AgentSettings(), agents.InMemoryExporter())
    try:
        assert not agents.get_runtime().verdicts.offer(_verdict("svc", Action.ISOLATE, 1))
        assert agents.stats()["verdicts_rejected_unsigned"] == 1
    finally:
        agents.shutdown(1.0)


def test_disabled_agent_calls_the_handler_untouched() -> None:
    memory = agents.InMemoryExporter()
    agents.configure(agents.AgentSettings(disabled=True), memory)
    try:
        @agents.govern(function="off")
        def handler(x: int) -> int:
            return x * 2

        assert handler(21) == 42
        agents.flush()
        assert memory.events == []
    finally:
        agents.shutdown(1.0)


def test_broker_down_the_handler_still_returns_its_result() -> None:
    from streams.ops.broker import free_port

    agents.configure(agents.AgentSettings(
        kafka_bootstrap=f"127.0.0.1:{free_port()}", verdict_key=KEY, queue_size=100))
    try:
        @agents.govern(function="offline")
        def handler(x: int) -> int:
            return x + 1

        assert [handler(i) for i in range(2000)] == list(range(1, 2001))
        assert not agents.flush(0.2)
    finally:
        agents.shutdown(0.5)
