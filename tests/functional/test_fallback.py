"""Fallback responses, fail-closed, and the README's quick start."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import agents
from schemas import Action, CostEvent, Verdict, now_ns, sign_verdict

KEY = b"fallback-key"
README = Path(__file__).parents[2] / "README.md"


def _isolate(function: str, sequence: int = 1) -> Verdict:
    return sign_verdict(Verdict(function=function, action=Action.ISOLATE, sequence=sequence,
                                expires_at_unix_nano=now_ns() + 30 * 10**9, reason="cost"), KEY)


@pytest.fixture(autouse=True)
def runtime() -> Any:
    memory = agents.InMemoryExporter()
    agents.configure(agents.AgentSettings(verdict_key=KEY), memory)
    yield memory
    agents.shutdown(1.0)


def test_http_fallback_answers_for_a_blocked_api_gateway_call() -> None:
    @agents.govern(function="api", fallback=agents.http_fallback)
    def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
        return {"statusCode": 200}

    assert handler({"httpMethod": "GET"}, None) == {"statusCode": 200}
    agents.get_runtime().verdicts.offer(_isolate("api"))
    response = handler({"httpMethod": "GET"}, None)
    assert response["statusCode"] == 503 and int(response["headers"]["Retry-After"]) >= 1
    agents.get_runtime().verdicts.offer(sign_verdict(Verdict(
        function="api", action=Action.THROTTLE, rate_rps=0.001, sequence=2,
        expires_at_unix_nano=now_ns() + 10**10), KEY))
    codes = [handler({}, None)["statusCode"] for _ in range(3)]
    assert codes[-1] == 429


def test_a_fixed_fallback_value_and_async_handlers() -> None:
    import asyncio

    @agents.govern(function="worker", fallback="skipped")
    async def handler() -> str:
        return "done"

    agents.get_runtime().verdicts.offer(_isolate("worker"))
    assert asyncio.run(handler()) == "skipped"


def test_blocked_errors_from_a_nested_call_are_not_swallowed(
        runtime: agents.InMemoryExporter) -> None:
    @agents.govern(function="inner")
    def inner() -> str:
        return "inner"

    @agents.govern(function="outer", fallback="outer-fallback")
    def outer() -> str:
        return inner()

    agents.get_runtime().verdicts.offer(_isolate("inner"))
    with pytest.raises(agents.FunctionIsolated) as raised:
        outer()
    assert raised.value.function == "inner"
    agents.flush()
    outcomes = {c.function: c.outcome.value for c in runtime.of_type(CostEvent)}
    assert outcomes == {"inner": "isolated", "outer": "error"}


def test_fail_closed_refuses_while_verdicts_are_unknown() -> None:
    @agents.govern(function="strict", fail_closed=True)
    def strict() -> str:
        return "ran"

    @agents.govern(function="lenient")
    def lenient() -> str:
        return "ran"

    with pytest.raises(agents.FunctionIsolated, match="fail-closed"):
        strict()  # no broker configured: verdicts can never be known
    assert lenient() == "ran"  # the default is fail-open


def test_the_readme_quick_start_runs() -> None:
    text = README.read_text()
    section = text[text.index("## For function authors"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "README has no python quick start"
    namespace: dict[str, Any] = {}
    exec(compile(code[1], str(README), "exec"), namespace)
    assert namespace["handler"]({"orderId": 1}, None) == {"statusCode": 200}
    agents.flush()
    [cost] = [c for c in agents.get_runtime().processor.exporter.of_type(CostEvent)  # type: ignore[attr-defined]
              if c.function == "checkout"]
    assert cost.custom_usd == {"llm_tokens": pytest.approx(1200 * 0.000002)}
