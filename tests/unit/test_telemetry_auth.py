"""Telemetry authentication: per-function keys, MAC headers and the keys' settings."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents import AgentSettings
from agents._auth import HEADER, MacKey, Sealer, function_key, parse_function_key
from schemas import CostEvent, Span, encode
from streams.errors import SettingsError, TelemetryKeyError
from streams.keys import function_key_for, load_telemetry_keys, parse_telemetry_keys
from streams.pipeline.authn import TelemetryAuth
from streams.pipeline.decoding import Record, decode_records
from streams.settings import Settings

SECRET = b"0123456789abcdef0123456789abcdef-telemetry"
AUTH = TelemetryAuth({b"k1": SECRET, b"k0": SECRET[::-1]})


@given(st.text(min_size=1, max_size=64), st.binary(max_size=512))
def test_only_the_named_functions_key_authenticates_its_records(function: str,
                                                                value: bytes) -> None:
    own = Sealer(function_key(b"k1", SECRET, function).decode()).headers(value)
    assert AUTH.problem(function, value, own) is None
    old = Sealer(function_key(b"k0", SECRET[::-1], function).decode()).headers(value)
    assert AUTH.problem(function, value, old) is None  # either key during a rotation
    other = Sealer(function_key(b"k1", SECRET, function + "x").decode()).headers(value)
    assert "does not match" in (AUTH.problem(function, value, other) or "")
    assert "does not match" in (AUTH.problem(function, value + b"!", own) or "")


def _decoded(event: CostEvent | Span, key: str) -> tuple[list[Any], list[Any]]:
    value = encode(event)
    cls = Span if isinstance(event, Span) else CostEvent
    record = Record("governor.costs", 0, 0, event.function.encode(), value,
                    Sealer(key).headers(value))
    decoded = decode_records([record], cls, auth=AUTH)
    return decoded.good, decoded.flagged


def test_a_function_counts_in_a_team_only_if_its_key_vouches_for_it() -> None:
    """A function claiming another team once added its spend to that team's budget (and
    got the team's functions isolated): a team counts only with a key made for it."""
    claim = CostEvent(function="mallory", invocation_id="i", team="payments", cost_usd=1000.0)
    [good], _ = _decoded(claim, function_key(b"k1", SECRET, "mallory", "payments").decode())
    assert good.team == "payments"  # its key was made for that team
    [good], _ = _decoded(claim, function_key(b"k1", SECRET, "mallory").decode())
    assert good.team == "" and good.cost_usd == 1000.0  # its own, counted without a team
    good, [flagged] = _decoded(claim, function_key(b"k1", SECRET, "mallory", "ml").decode())
    assert good == [] and flagged.team == "payments"  # another team's key: decides nothing
    span = Span(function="mallory", trace_id="a" * 32, span_id="b" * 16, name="n",
                start_time_unix_nano=1, end_time_unix_nano=2,
                resource={"governor.team": "payments", "faas.version": "7"})
    [good], _ = _decoded(span, function_key(b"k1", SECRET, "mallory").decode())
    assert good.resource == {"faas.version": "7"}
    [good], _ = _decoded(span, function_key(b"k1", SECRET, "mallory", "payments").decode())
    assert good.resource["governor.team"] == "payments"
    assert function_key(b"k1", SECRET, "a\x00b", "") != function_key(b"k1", SECRET, "a", "b")


@pytest.mark.parametrize(("key", "data", "hexdigest"), [  # RFC 4231, cases 2, 3 and 6
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
])
def test_the_mac_is_hmac_sha256(key: bytes, data: bytes, hexdigest: str) -> None:
    mac = MacKey(key)(data)
    assert base64.urlsafe_b64decode(mac + b"=" * (-len(mac) % 4)).hex() == hexdigest
    assert MacKey(key)(data) == mac  # the precomputed states are copied, never consumed


def test_each_refusal_names_its_reason() -> None:
    value = b'{"function":"f"}'
    assert "no governor-auth header" in (AUTH.problem("f", value, None) or "")
    assert "no governor-auth header" in (AUTH.problem("f", value, [("other", b"x")]) or "")
    assert "unknown telemetry key id 'k9'" in (
        AUTH.problem("f", value, [(HEADER, b"k9:abc")]) or "")
    assert "does not match" in (AUTH.problem("f", value, [(HEADER, b"k1:")]) or "")
    assert AUTH.authentic("f", value, None) is False


def test_function_keys_are_parsed_strictly() -> None:
    key = function_key(b"prod-1", SECRET, "checkout").decode()
    assert parse_function_key(key)[0] == b"prod-1"
    for bad in ("", "prod-1", "prod-1:short", ":" + key.split(":")[1]):
        with pytest.raises(ValueError, match="governor keys function"):
            parse_function_key(bad)


def test_a_malformed_function_key_is_a_problem_not_a_crash() -> None:
    settings = AgentSettings.from_env({"GOVERNOR_FUNCTION_KEY": "nonsense"})
    assert settings.function_key == ""
    assert any("GOVERNOR_FUNCTION_KEY is malformed" in p for p in settings.problems)
    key = function_key(b"k1", SECRET, "f").decode()
    assert AgentSettings.from_env({"GOVERNOR_FUNCTION_KEY": key}).function_key == key


def test_telemetry_keys_come_from_the_setting_or_the_embedded_stacks_file(
        tmp_path: Path) -> None:
    production = Settings(kafka_bootstrap="kafka:9092", data_dir=tmp_path)
    assert production.authenticates_telemetry
    with pytest.raises(TelemetryKeyError, match="GOVERNOR_TELEMETRY_AUTH=off"):
        load_telemetry_keys(production)
    with pytest.raises(TelemetryKeyError, match="at least 32"):
        load_telemetry_keys(production.replace(telemetry_key="k1:" + "x" * 8))
    keys = load_telemetry_keys(production.replace(telemetry_key=f"k1:{SECRET.decode()}"))
    assert keys == {b"k1": SECRET}
    assert load_telemetry_keys(production.replace(telemetry_auth="off")) is None
    assert not Settings(data_dir=tmp_path).authenticates_telemetry  # the embedded stack
    opted_in = Settings(data_dir=tmp_path, telemetry_auth="on")
    made = load_telemetry_keys(opted_in, create=True)
    assert made is not None and (tmp_path / "telemetry.key").stat().st_mode & 0o077 == 0
    assert load_telemetry_keys(opted_in) == made
    [(key_id, secret)] = made.items()
    assert function_key_for(opted_in, "f") == function_key(key_id, secret, "f").decode()
    assert function_key_for(opted_in, "f", "t") == function_key(key_id, secret, "f", "t").decode()
    with pytest.raises(SettingsError, match="TELEMETRY_AUTH"):
        Settings.from_env({"GOVERNOR_TELEMETRY_AUTH": "maybe"})


def test_telemetry_key_lists_keep_their_order_and_refuse_malformed_items() -> None:
    text = f"new:{SECRET.decode()},old:{SECRET[::-1].decode()}"
    assert list(parse_telemetry_keys(text)) == [b"new", b"old"]
    for bad in ("nokey", f":{SECRET.decode()}", "k1:short"):
        with pytest.raises(ValueError, match="GOVERNOR_TELEMETRY_KEY is"):
            parse_telemetry_keys(bad)


def test_functions_never_read_the_workers_telemetry_key() -> None:
    sources = "".join(p.read_text() for p in Path("agents").rglob("*.py"))
    assert "GOVERNOR_TELEMETRY_KEY" not in sources
