"""Snapshots are plain data behind a worker-only key: each refusal has its reason, and no
input — a pickle, garbage, a well-signed state of the wrong shape — does more than that."""

from __future__ import annotations

import hashlib
import hmac
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from schemas import CostEvent
from streams.decisions.lifecycle import Phase, VerdictIssuer
from streams.decisions.policy import PolicyEngine
from streams.decisions.snapshots import FORMAT, MAX_BYTES, REASONS, seal, unseal, verify
from streams.decisions.step import DecisionStep
from streams.decisions.thresholds import Thresholds
from streams.decisions.windows import Window
from streams.errors import SnapshotError
from streams.settings import Settings

KEY = b"s" * 32
VERDICT_KEY = b"v" * 32
S = 1_000_000_000
WINDOW = 10 * S
T0 = 1_800_000_000 * S
SETTINGS = Settings(hold_seconds=0, warmup_windows=6, learning_windows=0)
_POLICIES: list[PolicyEngine] = []


def _policies() -> PolicyEngine:
    if not _POLICIES:
        _POLICIES.append(PolicyEngine(SETTINGS.policy_dir))
    return _POLICIES[0]


def _step(snapshots: dict[str, bytes] | None = None) -> DecisionStep:
    return DecisionStep(SETTINGS, VerdictIssuer(VERDICT_KEY, 300 * S, "governor-worker"),
                        _policies(), Thresholds(SETTINGS), snapshots, state_key=KEY)


def _window(index: int, calls: int, cost: float = 0.0001, function: str = "f") -> Window:
    start = T0 + index * WINDOW
    w = Window(start, start + WINDOW)
    for i in range(calls):
        w.add(CostEvent(function=function, invocation_id=f"{index}-{i}", cost_usd=cost,
                        team="payments", version="v1",
                        time_unix_nano=start + i * (WINDOW // calls)))
    return w


def _genuine() -> bytes:
    """A snapshot of a function mid-episode: warm, throttled, with an open incident."""
    step = _step()
    for i in range(8):
        step.on_window("f", _window(i, 100 + i % 3), T0 + (i + 1) * WINDOW)
    step.on_window("f", _window(8, 2500), T0 + 9 * WINDOW)
    assert step.lifecycle.phase("f") is Phase.THROTTLED
    blob = step.snapshot("f")
    assert blob is not None
    return blob


GENUINE = _genuine()


def _signed(body: object, key: bytes = KEY) -> bytes:
    raw = orjson.dumps(body)
    return hmac.new(key, raw, hashlib.sha256).digest() + raw


def _reason(blob: bytes, function: str = "f") -> str:
    """Why a fresh worker refuses ``blob`` as ``function``'s snapshot ("" if it takes it)."""
    step = _step({function: blob})
    step.on_window(function, _window(9, 100, function=function), T0 + 10 * WINDOW)
    refused = [k.removeprefix("snapshots_refused_") for k in step.counters
               if k.startswith("snapshots_refused_")]
    assert sum(step.counters.values()) == 1, step.counters  # counted once, either way
    return refused[0] if refused else ""


def test_a_genuine_snapshot_restores_the_function_mid_episode() -> None:
    step = _step({"f": GENUINE})
    assert step.counters == {}  # restored on first use
    step.on_window("f", _window(9, 2500), T0 + 10 * WINDOW)
    assert step.counters == {"snapshots_restored": 1}
    assert step.lifecycle.phase("f") is Phase.THROTTLED and step.resumed == ["f"]
    assert step.decider.warm("f")
    body = orjson.loads(GENUINE[32:])
    assert body["format"] == FORMAT and body["function"] == "f"
    assert set(body["state"]) == {"detection", "lifecycle", "memory", "incident", "team",
                                  "spend"}


class _RunsACommand:
    """Pickles into a call of os.system: what a plain unpickler would run on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_is_refused_unread_even_with_a_valid_mac(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    payload = pickle.dumps({"detectors": _RunsACommand(marker)})
    for blob in (payload, hmac.new(KEY, payload, hashlib.sha256).digest() + payload,
                 hmac.new(VERDICT_KEY, payload, hashlib.sha256).digest() + payload):
        assert _reason(blob) == "pickle"
        with pytest.raises(SnapshotError, match="never unpickled"):
            unseal(blob, "f", KEY)
    assert not marker.exists()


@pytest.mark.parametrize(("blob", "function", "reason"), [
    (GENUINE, "f", ""),
    (GENUINE.replace(b'"team":"payments"', b'"team":"paymentz"'), "f", "key"),
    (GENUINE[:31] + b"\x00" + GENUINE[32:], "f", "key"),
    (b"", "f", "key"),
    (b"\x00" * 32, "f", "key"),
    (GENUINE, "g", "function"),  # f's state under g's key
    (b" " * (MAX_BYTES + 1), "f", "size"),
], ids=["genuine", "altered-body", "altered-mac", "empty", "mac-only", "moved", "oversized"])
def test_refusals_name_their_reason(blob: bytes, function: str, reason: str) -> None:
    assert _reason(blob, function) == reason


def test_a_snapshot_signed_with_the_verdict_key_is_refused() -> None:
    """The verdict key (which a function may hold, as a shared secret) cannot write
    state: only the state key can."""
    body = orjson.loads(GENUINE[32:])
    assert _reason(_signed(body, VERDICT_KEY)) == "key"
    assert _reason(_signed(body)) == ""


@pytest.mark.parametrize(("body", "reason"), [
    (b"not json", "format"),
    (orjson.dumps([1, 2]), "format"),
    (orjson.dumps({"format": 1, "function": "f", "state": {}}), "format"),
    (orjson.dumps({"function": "f", "state": {}}), "format"),
    (orjson.dumps({"format": FORMAT, "function": "f", "state": []}), "shape"),
    (orjson.dumps({"format": FORMAT, "function": "f", "state": {}}), "shape"),
])
def test_well_signed_bodies_of_another_format_or_shape_are_refused(body: bytes,
                                                                   reason: str) -> None:
    assert _reason(hmac.new(KEY, body, hashlib.sha256).digest() + body) == reason


def _edit(value: Any, path: list[str | int], new: Any) -> Any:
    """``value`` with the item at ``path`` replaced by ``new`` (a copy)."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, str(head): _edit(value.get(str(head)), rest, new)}
    copy = list(value)
    copy[int(head)] = _edit(copy[int(head)], rest, new)
    return copy


def _paths(value: Any, prefix: list[str | int]) -> Iterator[list[str | int]]:
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, [*prefix, k])
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            yield from _paths(v, [*prefix, i])


BODY = orjson.loads(GENUINE[32:])
PATHS = list(_paths(BODY["state"], ["state"]))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=12)
"""What orjson can carry: JSON with no NaN (it writes NaN as null)."""


EXTREMES = st.sampled_from([-1, 0, 1, 2**62, -1e300, 1e300, 1e-300, "", "x" * 20_000,
                            [0.0] * 20_000, {"kind": "pickle"}])


def _at(value: Any, path: list[str | int]) -> Any:
    for step in path:
        value = value[step]
    return value


def _like(old: Any) -> st.SearchStrategy[Any]:
    """Values of the same JSON type as ``old``: what passes a type check."""
    if isinstance(old, bool):
        return st.booleans()
    if isinstance(old, int):
        return st.integers(-(2**63), 2**63 - 1) | st.sampled_from([old - 1, old + 1, -old])
    if isinstance(old, float):
        return (st.floats(allow_nan=False, allow_infinity=False)
                | st.sampled_from([-old, old * 1e6, old / 1e6, 0.0]))
    if isinstance(old, str):
        return st.text(max_size=30)
    if isinstance(old, list) and old:
        return st.lists(_like(old[0]), max_size=2 * len(old) + 2)
    return JSON


@hsettings(max_examples=600, deadline=None,
           suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(path=st.sampled_from(PATHS), data=st.data())
def test_any_well_signed_edit_is_refused_or_decides_without_error(
        path: list[str | int], data: st.DataObject) -> None:
    """A worker-key holder's arbitrary edit of a genuine state — of the right type or
    not — is either refused with a reason (never another error) or restores a function
    that goes on deciding."""
    new = data.draw(_like(_at(BODY, path)) | JSON | EXTREMES)
    step = _step()
    try:
        step._restore("f", unseal(_signed(_edit(BODY, path, new)), "f", KEY))
    except SnapshotError as exc:
        assert exc.reason in REASONS
        return
    for i in range(9, 12):
        step.on_window("f", _window(i, 100 + 900 * (i == 10)), T0 + (i + 1) * WINDOW)
    assert step.snapshot("f") is not None


@hsettings(max_examples=200, deadline=None)
@given(body=JSON, raw=st.binary(max_size=200))
def test_garbage_is_refused_with_a_reason(body: Any, raw: bytes) -> None:
    for blob in (_signed(body), _signed({"format": FORMAT, "function": "f", "state": body}),
                 raw, hmac.new(KEY, raw, hashlib.sha256).digest() + raw):
        try:
            verify(blob, KEY)
            state = unseal(blob, "f", KEY)
        except SnapshotError as exc:
            assert exc.reason in REASONS
            continue
        step = _step()
        with pytest.raises(SnapshotError) as refused:
            step._restore("f", state)
        assert refused.value.reason in REASONS


@pytest.mark.parametrize("depth", [3, 400, 2000])
def test_deep_nesting_is_refused_not_a_crash(depth: int) -> None:
    """Combiners of combiners, deeper than Python's recursion (or orjson's) allows."""
    leaf = BODY["state"]["detection"]["shape"]
    gate = {k: leaf[k] for k in ("threshold", "warmup", "patience", "memory", "direction",
                                 "n_learned", "flags")}
    opening = orjson.dumps({**gate, "kind": "combined", "top_k": 1})[:-1] + b',"children":['
    shape = opening * depth + orjson.dumps(leaf) + b"]}" * depth
    marker = b'"shape":'
    body = orjson.dumps(BODY)
    start = body.index(marker) + len(marker)
    end = start + len(orjson.dumps(leaf))
    assert body[start:end] == orjson.dumps(leaf)
    reason = _reason(_signed(orjson.Fragment(body[:start] + shape + body[end:])))
    assert reason == ("" if depth == 3 else "shape" if depth == 400 else "format")


def test_seal_round_trips_plain_data() -> None:
    state = {"a": [1, 2.5, None, True], "b": {"c": "d"}}
    assert unseal(seal("f", state, KEY), "f", KEY).raw("a") == [1, 2.5, None, True]
