"""The agent in-process: telemetry through the in-memory exporter, verdicts offered
directly to the cache (no broker needed)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import agents
from agents._stats import Stats
from schemas import Action, CostEvent, Outcome, Span, Verdict, decode, encode, now_ns, sign_verdict
from schemas.events import MAX_USD

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


def test_the_invocation_span_takes_what_the_handler_adds_within_limits(
        exporter: agents.InMemoryExporter) -> None:
    """The handler's ``trace.get_current_span()`` is the invocation span: attributes,
    events, a renamed span and its status arrive; values of an unsupported type and
    anything past the limits are dropped, never raised."""
    from agents._span import MAX_ATTRIBUTES, MAX_EVENTS

    @agents.govern(function="enriched")
    def handler() -> None:
        span = trace.get_current_span()
        assert span.is_recording() and span.get_span_context().is_valid
        span.set_attributes({"order.id": "o-1", "items": 3, "tags": ["a", "b"]})
        span.set_attribute("bad", {"not": "allowed"})
        for i in range(MAX_ATTRIBUTES + 5):
            span.set_attribute(f"k{i}", i)
        span.set_attribute("order.id", "o-2")  # replacing a key is not a new one
        for i in range(MAX_EVENTS + 2):
            span.add_event("step", {"i": i, "bad": object()})
        span.update_name("enriched GET /orders")
        span.set_status(trace.StatusCode.OK)
        span.set_status(trace.StatusCode.ERROR, "ignored: OK is final")

    handler()
    agents.flush()
    [span] = exporter.of_type(Span)
    assert span.name == "enriched GET /orders"
    assert span.attributes["order.id"] == "o-2" and span.attributes["items"] == 3
    assert span.attributes["tags"] == '["a", "b"]'
    assert "bad" not in span.attributes
    assert sum(1 for k in span.attributes if k.startswith("k")) == MAX_ATTRIBUTES - 3
    assert len(span.events) == MAX_EVENTS and span.events[0].attributes == {"i": 0}
    assert span.status_code.name == "OK"


def test_a_governed_call_inside_another_is_its_child(
        exporter: agents.InMemoryExporter) -> None:
    """Lineage in-process: a governed function called from another governed one (or
    from any current OpenTelemetry span) continues its trace."""
    @agents.govern(function="inner")
    def inner() -> None:
        return None

    @agents.govern(function="outer")
    def outer() -> None:
        inner()

    outer()
    tracer = TracerProvider().get_tracer("app")
    with tracer.start_as_current_span("job") as job:
        inner()
    agents.flush()
    spans = {s.function: s for s in exporter.of_type(Span)[:2]}
    assert spans["inner"].trace_id == spans["outer"].trace_id
    assert spans["inner"].parent_span_id == spans["outer"].span_id
    assert spans["outer"].parent_span_id == ""
    last = exporter.of_type(Span)[-1]
    assert (last.trace_id, last.parent_span_id) == (
        f"{job.get_span_context().trace_id:032x}", f"{job.get_span_context().span_id:016x}")


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


def test_an_agent_fault_never_reaches_the_handler_or_its_caller(
        exporter: agents.InMemoryExporter, caplog: pytest.LogCaptureFixture) -> None:
    """A fault in the agent's own steps (here its span could not be queued) is counted
    and logged once; results and exceptions are exactly the handler's."""
    runtime = agents.get_runtime()

    def broken_offer(record: object) -> None:
        raise RuntimeError("queue exploded")

    runtime.processor.offer = broken_offer  # type: ignore[method-assign]

    @agents.govern(function="robust")
    def handler(x: int) -> int:
        if x < 0:
            raise ValueError("negative")
        return x * 2

    assert [handler(i) for i in range(3)] == [0, 2, 4]
    with pytest.raises(ValueError, match="negative"):
        handler(-1)
    assert agents.stats()["agent_faults"] == 4
    faults = [r for r in caplog.records if "Governor agent fault in finish" in r.getMessage()]
    assert len(faults) == 1 and "handler was not affected" in faults[0].getMessage()


def test_a_misconfiguration_runs_the_handler_bare_unless_fail_closed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    memory = agents.InMemoryExporter()
    agents.configure(agents.AgentSettings(verdict_key=KEY), memory)
    try:
        @agents.govern(function="priced", provider="moon")  # no such price list
        def handler() -> str:
            return "ran"

        assert handler() == handler() == "ran"
        assert agents.stats()["agent_faults"] == 1  # the binding is not retried per call
        assert memory.events == []

        @agents.govern(function="strict", provider="moon", fail_closed=True)
        def strict() -> str:
            return "ran"

        with pytest.raises(agents.ConfigurationError, match="provider 'moon'"):
            strict()
    finally:
        agents.shutdown(1.0)


def test_an_escaping_exception_is_marked_escaped(exporter: agents.InMemoryExporter) -> None:
    @agents.govern(function="fails")
    def handler() -> None:
        raise KeyError("id")

    with pytest.raises(KeyError):
        handler()
    agents.flush()
    [span] = exporter.of_type(Span)
    assert span.events[0].attributes["exception.escaped"] is True


PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize("event", [
    {"version": "2.0", "headers": {"traceparent": PARENT}},  # API Gateway v2, URLs
    {"httpMethod": "GET", "headers": {"Traceparent": PARENT}},  # API Gateway v1
    {"httpMethod": "GET", "multiValueHeaders": {"TRACEPARENT": [PARENT]}},  # ALB
    {"Records": [{"eventSource": "aws:sqs", "messageAttributes": {
        "traceparent": {"stringValue": PARENT, "dataType": "String"}}}]},
    {"Records": [{"EventSource": "aws:sns", "Sns": {"MessageAttributes": {
        "traceparent": {"Type": "String", "Value": PARENT}}}}]},
    {"source": "orders", "detail-type": "placed", "detail": {"traceparent": PARENT}},
], ids=["apigw-v2", "apigw-v1", "alb-multi", "sqs", "sns", "eventbridge"])
def test_w3c_context_is_read_wherever_the_event_carries_it(
        exporter: agents.InMemoryExporter, event: dict[str, object]) -> None:
    @agents.govern(function="traced")
    def handler(event: dict[str, object], context: None) -> None:
        return None

    handler(event, None)
    agents.flush()
    [span] = exporter.of_type(Span)
    assert (span.trace_id, span.parent_span_id) == ("0af7651916cd43dd8448eb211c80319c",
                                                    "b7ad6b7169203331")


def test_the_xray_trace_is_a_span_link_in_lambda(monkeypatch: pytest.MonkeyPatch) -> None:
    memory = agents.InMemoryExporter()
    agents.configure(agents.AgentSettings(verdict_key=KEY, platform_function="linked"), memory)
    try:
        @agents.govern
        def handler() -> None:
            return None

        monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-5759e988-bd862e3fe1be46a994272793;"
                                               "Parent=53995c3f42cd8ad8;Sampled=1")
        handler()
        monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=garbage")
        handler()
        agents.flush()
        linked, unlinked = memory.of_type(Span)
        [link] = linked.links
        assert (link.trace_id, link.span_id) == ("5759e988bd862e3fe1be46a994272793",
                                                 "53995c3f42cd8ad8")
        assert link.attributes == {"link.source": "aws.xray", "aws.xray.sampled": True}
        assert unlinked.links == []
        assert linked.resource["service.version"] == "$LATEST"
    finally:
        agents.shutdown(1.0)


def test_outside_lambda_the_version_is_unknown_and_no_xray_is_read(
        exporter: agents.InMemoryExporter, monkeypatch: pytest.MonkeyPatch) -> None:
    @agents.govern(function="local")
    def handler() -> None:
        return None

    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-5759e988-bd862e3fe1be46a994272793;"
                                           "Parent=53995c3f42cd8ad8;Sampled=1")
    handler()
    agents.flush()
    [span] = exporter.of_type(Span)
    assert span.resource["service.version"] == "unknown" and span.links == []


class _SlowFlush(agents.InMemoryExporter):
    """Delivery takes 30 ms: what a flush-on-return waits for a broker's round trip."""

    def flush(self, timeout_s: float) -> bool:
        time.sleep(0.03)
        return True


def test_the_agents_flush_is_billed_to_the_invocation_that_waited() -> None:
    memory = _SlowFlush()
    agents.configure(agents.AgentSettings(verdict_key=KEY, flush_on_return=True,
                                          flush_timeout_ms=100), memory)
    try:
        @agents.govern(function="lambda-like")
        def handler() -> None:
            return None

        handler()  # flushes (what was queued before it: nothing yet), then hands its own on
        handler()  # within a second: no wait, its record joins the batch
        [first, second] = memory.of_type(CostEvent)
        assert first.duration_ms >= 30 > second.duration_ms
    finally:
        agents.shutdown(1.0)


def test_the_breaker_stops_calls_waiting_for_a_dead_broker() -> None:
    from agents._runtime import Breaker

    breaker = Breaker(failures=3, cooldown_s=0.05)
    for _ in range(3):
        assert breaker.allows()
        breaker.record(False)
    assert not breaker.allows()  # open: nobody waits
    time.sleep(0.06)
    assert breaker.allows()  # half-open: one trial
    breaker.record(False)
    assert not breaker.allows()
    time.sleep(0.06)
    assert not breaker.allows()  # the cooldown doubled after a failed trial
    time.sleep(0.05)
    assert breaker.allows()
    breaker.record(True)
    assert breaker.allows() and breaker.allows()


def test_librdkafkas_logs_are_rate_limited_while_the_broker_is_down(
        caplog: pytest.LogCaptureFixture) -> None:
    """A real producer against a closed port: librdkafka logs each failed connection;
    one line per kind gets through a minute, the rest are counted."""
    from streams.ops.broker import free_port

    caplog.set_level(logging.DEBUG, logger="governor.agent.kafka")
    agents.configure(agents.AgentSettings(kafka_bootstrap=f"127.0.0.1:{free_port()}",
                                          verdict_key=KEY))
    try:
        @agents.govern(function="offline")
        def handler() -> int:
            return 1

        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            handler()
            time.sleep(0.01)
        lines = [r for r in caplog.records if r.name == "governor.agent.kafka"]
        assert 1 <= len(lines) <= 3
        assert agents.stats().get("kafka_logs_suppressed", 0) >= 1
    finally:
        agents.shutdown(0.5)


@pytest.mark.parametrize(("kind", "value", "scrubbed"), [
    ("email", "reply to ann.lee+x@example.co.uk now", "reply to [REDACTED:email] now"),
    ("card", "paid with 4111 1111 1111 1111", "paid with [REDACTED:card]"),
    ("card", "order 4111111111111112 (not Luhn)", "order 4111111111111112 (not Luhn)"),
    ("token", "Authorization: Bearer eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl",
     "Authorization: [REDACTED:token]"),
    ("token", "key AKIAIOSFODNN7EXAMPLE leaked", "key [REDACTED:token] leaked"),
    ("ip", "from 203.0.113.9 and 2001:db8::8a2e:370:7334", "from [REDACTED:ip] and "
     "[REDACTED:ip]"),
])
def test_personal_data_is_scrubbed_before_export(kind: str, value: str, scrubbed: str) -> None:
    """Span attributes, the exception's message and stack trace, and the status message
    leave the function scrubbed; sensitive keys lose their whole value; Governor's own
    attributes stay (the egress policy reads the hosts)."""
    memory = agents.InMemoryExporter()
    agents.configure(agents.AgentSettings(verdict_key=KEY), memory)
    try:
        @agents.govern(function="private")
        def handler() -> None:
            span = trace.get_current_span()
            span.set_attribute("note", value)
            span.set_attribute("http.request.header.cookie", "sid=abc")
            span.set_attribute("enduser.id", "ann")
            raise RuntimeError(value)

        with pytest.raises(RuntimeError):
            handler()
        agents.flush()
        [span] = memory.of_type(Span)
        assert span.attributes["note"] == scrubbed
        assert span.attributes["http.request.header.cookie"] == "[REDACTED]"
        assert span.attributes["enduser.id"] == "[REDACTED]"
        assert span.events[0].attributes["exception.message"] == scrubbed
        assert value not in str(span.events[0].attributes["exception.stacktrace"]) or \
            value == scrubbed
        assert value not in span.status_message or value == scrubbed
    finally:
        agents.shutdown(1.0)


def test_redaction_is_configurable_and_bad_patterns_are_problems() -> None:
    settings = agents.AgentSettings.from_env({
        "GOVERNOR_REDACT_VALUES": "email", "GOVERNOR_REDACT_KEYS": "tenant_secret",
        "GOVERNOR_REDACT_PATTERNS": '["ORD-\\\\d+"]'})
    memory = agents.InMemoryExporter()
    agents.configure(settings, memory)
    try:
        @agents.govern(function="configured")
        def handler() -> None:
            span = trace.get_current_span()
            span.set_attribute("note", "ORD-42 for a@b.io from 10.0.0.1")
            span.set_attribute("x.tenant_secret", "s3")

        handler()
        agents.flush()
        [span] = memory.of_type(Span)
        assert span.attributes["note"] == "[REDACTED:custom0] for [REDACTED:email] from 10.0.0.1"
        assert span.attributes["x.tenant_secret"] == "[REDACTED]"
    finally:
        agents.shutdown(1.0)
    bad = agents.AgentSettings.from_env({"GOVERNOR_REDACT_VALUES": "email,dna",
                                         "GOVERNOR_REDACT_PATTERNS": "[oops"})
    assert bad.redact_values == ("email", "card", "token", "ip") and bad.redact_patterns == ()
    assert [p.split("=")[0] for p in bad.problems] == ["GOVERNOR_REDACT_VALUES",
                                                       "GOVERNOR_REDACT_PATTERNS"]
    assert not agents.AgentSettings.from_env({"GOVERNOR_REDACT": "0"}).redact


def test_with_the_public_key_a_function_obeys_the_workers_and_cannot_forge() -> None:
    """Agents hold the workers' Ed25519 public key: a verdict the workers signed is
    enforced; one a compromised function made — with the public key as an HMAC secret,
    or with a key of its own — is rejected and counted."""
    from schemas.signing import new_private_key, public_key

    private = new_private_key("governor-1")
    memory = agents.InMemoryExporter()
    agents.configure(agents.AgentSettings(verdict_key=public_key(private)), memory)
    try:
        cache = agents.get_runtime().verdicts
        public = public_key(private)  # what every function holds
        assert not cache.offer(_verdict("svc", Action.ISOLATE, 1, key=public.split(b":", 1)[1]))
        assert not cache.offer(_verdict("svc", Action.ISOLATE, 2,
                                        key=new_private_key("governor-1")))
        assert cache.current("svc") is None
        assert cache.offer(_verdict("svc", Action.THROTTLE, 3, rate_rps=5, key=private))
        current = cache.current("svc")
        assert current is not None and current.action is Action.THROTTLE
        assert agents.stats()["verdicts_rejected_forged"] == 2
    finally:
        agents.shutdown(1.0)


def test_a_function_given_the_private_key_is_warned() -> None:
    from schemas.signing import new_private_key

    settings = agents.AgentSettings.from_env(
        {"GOVERNOR_VERDICT_KEY": new_private_key("governor-1").decode()})
    assert any("private key" in p for p in settings.problems)


class _Wires:
    """An exporter that keeps the encoded records as they would go on the wire."""

    def __init__(self) -> None:
        self.records: list[agents.Wire] = []

    def export(self, records: Sequence[agents.Wire]) -> agents.ExportResult:
        self.records.extend(records)
        return agents.ExportResult.SUCCESS

    def room(self) -> int:
        return 1 << 30

    def flush(self, timeout_s: float) -> bool:
        return True

    def shutdown(self, timeout_s: float) -> None:
        return None


def test_the_wire_bytes_are_the_canonical_encoding_of_their_events(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The export thread encodes without building events; every shape of invocation
    must still give exactly the bytes that encoding the decoded event gives (same
    fields, order, types and defaults as the contract classes)."""
    wires = _Wires()
    agents.configure(agents.AgentSettings(verdict_key=KEY, platform_function="shapes",
                                          region="eu-west-1", redact=True), wires)
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-5759e988-bd862e3fe1be46a994272793;"
                                           "Parent=53995c3f42cd8ad8;Sampled=1")
    try:
        @agents.govern(function="shapes", memory_mb=1769, team="t", egress=False)
        def handler(event: dict[str, object], context: object) -> str:
            span = trace.get_current_span()
            if event.get("rich"):
                span.set_attributes({"user.email": "ada@example.com", "n": 3, "ratio": 0.5,
                                     "ok": True, "tags": ["a", "b"], "ids": (1, 2)})
                span.add_event("step", {"card": "4111 1111 1111 1111", "k": 1.25})
                agents.record_cost(1500, 0.000002, kind="llm_tokens")
            if event.get("fail"):
                raise ValueError("token=abcdef0123456789abcdef user ada@example.com")
            return "ok"

        handler({}, None)
        handler({"rich": True, "headers": {"traceparent": PARENT,
                                           "tracestate": "vendor=opaque"}}, None)
        with pytest.raises(ValueError):
            handler({"fail": True, "rich": True}, None)
        agents.flush()
    finally:
        agents.shutdown(1.0)
    assert [w.type for w in wires.records] == ["span", "cost"] * 3
    for wire in wires.records:
        cls: type[Span] | type[CostEvent] = Span if wire.type == "span" else CostEvent
        event = decode(wire.value, cls)
        assert event.function == wire.function == "shapes"
        assert encode(event) == wire.value, wire.value.decode()
    spans = [decode(w.value, Span) for w in wires.records if w.type == "span"]
    assert spans[1].trace_state == "vendor=opaque" and spans[1].links
    assert "ada@example.com" not in b"".join(w.value for w in wires.records).decode()


def test_what_a_caller_or_a_handler_passes_never_makes_the_telemetry_invalid() -> None:
    """A caller's long tracestate, an exception quoting a long input, and a custom cost
    that is not finite or beyond any invocation's once made records the workers refuse
    (and the spend and egress they carried never reached the decisions)."""
    wires = _Wires()
    agents.configure(agents.AgentSettings(verdict_key=KEY), wires)
    try:
        @agents.govern(function="checkout", team="payments")
        def handler(event: dict[str, Any], context: object) -> str:
            for units in event.get("units", []):
                agents.record_cost(units, 1e-6, kind="llm_tokens")
            if "body" in event:
                raise ValueError("invalid order: " + event["body"])
            return "ok"

        members = [f"k{i}={'v' * 200}" for i in range(10)]
        handler({"headers": {"traceparent": PARENT, "tracestate": ",".join(members)}}, None)
        with pytest.raises(ValueError):
            handler({"body": "x" * 5000}, None)
        handler({"units": [float("inf"), float("nan"), 1000.0]}, None)
        handler({"units": [1e303, 1e303]}, None)
        agents.flush()
    finally:
        agents.shutdown(1.0)
    spans = [decode(w.value, Span) for w in wires.records if w.type == "span"]
    costs = [decode(w.value, CostEvent) for w in wires.records if w.type == "cost"]
    assert len(spans) == len(costs) == 4  # each valid: decode refuses anything else
    assert spans[0].trace_state == ",".join(members[:2])  # whole members, from the left
    assert spans[1].status_message.startswith("ValueError: invalid order: xxx")
    assert len(spans[1].status_message) == 4096
    assert costs[2].custom_usd == {"llm_tokens": pytest.approx(0.001)}  # the finite one
    assert costs[3].custom_usd == {"llm_tokens": MAX_USD} and costs[3].cost_usd == MAX_USD


def test_records_wait_unencoded_while_the_exporter_has_no_room() -> None:
    """A full producer buffer (a broker slower than the function) costs nothing per
    record: records wait in the bounded queue without being encoded, the queue's bound
    sheds what comes meanwhile (counted), and they go out once there is room."""
    class Full(_Wires):
        space = 0

        def room(self) -> int:  # a buffer of ``space`` events, never emptied
            return self.space - len(self.records)

    exporter, stats, converted = Full(), Stats(), []

    def convert(record: int) -> list[agents.Wire]:
        converted.append(record)
        return [agents.Wire("span", "f", b"{}"), agents.Wire("cost", "f", b"{}")]

    processor = agents.BatchProcessor(exporter, convert, stats, max_queue=5, interval_s=60)
    try:
        for record in range(8):
            processor.offer(record)
        processor.kick()
        assert converted == [] and stats.snapshot() == {"dropped_queue_full": 6}
        exporter.space = 6  # room for three records' events
        processor.kick()
        assert converted == [0, 1, 2] and len(exporter.records) == 6
        exporter.space = 100
        assert processor.flush(1.0)
        assert converted == [0, 1, 2, 3, 4] and len(exporter.records) == 10
    finally:
        processor.shutdown(0.5)
