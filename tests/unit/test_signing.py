"""Verdict signatures: valid only for the signing key and the exact fields signed."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import (
    Action,
    ControlUpdate,
    SignatureError,
    Verdict,
    decode,
    decode_event,
    encode,
    sign_record,
    sign_verdict,
    verify_record,
    verify_verdict,
)
from schemas.signing import new_private_key, public_key
from tests.unit.strategies import EVENT_STRATEGIES

KEY = b"governor-test-key"
verdicts = EVENT_STRATEGIES[Verdict]


def signed() -> Verdict:
    verdict = Verdict(
        function="checkout",
        action=Action.THROTTLE,
        rate_rps=2.5,
        issued_at_unix_nano=1_000,
        expires_at_unix_nano=2_000,
        sequence=7,
        reason="cost spike",
        anomaly_id="a-1",
        issuer="worker-1",
    )
    return sign_verdict(verdict, KEY)


def _verdict() -> Verdict:
    return dataclasses.replace(signed(), signature="")


def test_sign_then_verify() -> None:
    verdict = signed()
    verify_verdict(verdict, KEY)
    assert re.fullmatch(r"hmac-sha256:[0-9a-f]{64}", verdict.signature)


def test_signing_changes_only_the_signature() -> None:
    verdict = signed()
    assert dataclasses.replace(verdict, signature="") == dataclasses.replace(
        sign_verdict(verdict, b"other"), signature=""
    )
    assert sign_verdict(verdict, KEY) == verdict  # re-signing ignores the old signature


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("function", "payments"),
        ("action", Action.ISOLATE),
        ("action", Action.RELEASE),
        ("rate_rps", 25.0),
        ("rate_rps", None),
        ("expires_at_unix_nano", 2_000_000),
        ("sequence", 8),
        ("issued_at_unix_nano", 999),
        ("reason", "nothing"),
        ("anomaly_id", ""),
        ("issuer", "mallory"),
        ("event_id", "0" * 32),
        ("time_unix_nano", 1),
    ],
)
def test_field_changed_after_signing_fails(field: str, value: Any) -> None:
    altered = dataclasses.replace(signed(), **{field: value})
    with pytest.raises(SignatureError, match="does not match"):
        verify_verdict(altered, KEY)


def test_wrong_key_fails() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify_verdict(signed(), b"another-key")
    with pytest.raises(SignatureError):
        verify_verdict(signed(), b"")


def test_unsigned_fails() -> None:
    with pytest.raises(SignatureError, match="unsigned"):
        verify_verdict(dataclasses.replace(signed(), signature=""), KEY)


@pytest.mark.parametrize(
    "signature",
    ["hmac-sha256:", "hmac-sha256:" + "0" * 64, "hmac-sha256:zz", "sha256:" + "0" * 64, "x"],
)
def test_forged_or_malformed_signature_fails(signature: str) -> None:
    with pytest.raises(SignatureError):
        verify_verdict(dataclasses.replace(signed(), signature=signature), KEY)


def test_digest_without_scheme_prefix_fails() -> None:
    verdict = signed()
    digest = verdict.signature.removeprefix("hmac-sha256:")
    with pytest.raises(SignatureError, match="scheme"):
        verify_verdict(dataclasses.replace(verdict, signature=digest), KEY)


def test_signature_scheme_prefix() -> None:
    assert signed().signature.startswith("hmac-sha256:")


def test_signature_survives_encode_decode() -> None:
    verdict = signed()
    decoded = decode(encode(verdict), Verdict)
    assert decoded == verdict
    verify_verdict(decoded, KEY)
    event = decode_event(encode(verdict))
    assert isinstance(event, Verdict)
    verify_verdict(event, KEY)


@given(verdict=verdicts,  # any shared HMAC secret (the Ed25519 prefixes name key kinds)
       key=st.binary(min_size=1, max_size=64).filter(lambda k: not k.startswith(b"ed25519")))
def test_any_verdict_signs_verifies_and_round_trips(verdict: Verdict, key: bytes) -> None:
    verdict = sign_verdict(verdict, key)
    verify_verdict(verdict, key)
    verify_verdict(decode(encode(verdict), Verdict), key)


@given(verdict=verdicts, sequence=st.integers(min_value=0, max_value=2**63 - 1))
def test_any_sequence_change_fails(verdict: Verdict, sequence: int) -> None:
    verdict = sign_verdict(verdict, KEY)
    if sequence != verdict.sequence:
        with pytest.raises(SignatureError):
            verify_verdict(dataclasses.replace(verdict, sequence=sequence), KEY)


def test_integer_rate_signature_survives_encode_decode() -> None:
    # An int rate (type-correct for a float field) must sign the bytes a decoder re-creates.
    verdict = sign_verdict(
        Verdict(
            function="f", action=Action.THROTTLE, rate_rps=5, expires_at_unix_nano=2, sequence=1
        ),
        KEY,
    )
    assert type(verdict.rate_rps) is float
    verify_verdict(verdict, KEY)
    verify_verdict(decode(encode(verdict), Verdict), KEY)
    assert (
        verdict.signature == sign_verdict(dataclasses.replace(verdict, rate_rps=5.0), KEY).signature
    )


def test_ed25519_agents_check_verdicts_but_cannot_make_them() -> None:
    """The workers sign with a private key; a function holding the public key can
    verify, and whatever it signs — with that string as an HMAC secret, or as a key
    of its own — is refused."""
    from schemas.signing import new_private_key, public_key

    private = new_private_key("k1")
    public = public_key(private)
    assert public.startswith(b"ed25519-pub:k1:") and private not in public
    signed = sign_verdict(_verdict(), private)
    verify_verdict(signed, public)
    with pytest.raises(SignatureError, match="public key cannot sign"):
        sign_verdict(_verdict(), public)
    forged = sign_verdict(_verdict(), public.replace(b"ed25519-pub:", b"hmac:"))
    with pytest.raises(SignatureError, match="not an Ed25519 signature"):
        verify_verdict(forged, public)
    other = sign_verdict(_verdict(), new_private_key("k1"))  # same id, another key
    with pytest.raises(SignatureError, match="does not match"):
        verify_verdict(other, public)
    altered = dataclasses.replace(signed, action=Action.RELEASE)
    with pytest.raises(SignatureError, match="does not match"):
        verify_verdict(altered, public)


def test_ed25519_keys_rotate_with_two_public_keys_valid() -> None:
    from schemas.signing import new_private_key, public_key

    old, new = new_private_key("2025"), new_private_key("2026")
    ring = public_key(old) + b"," + public_key(new)[len(b"ed25519-pub:"):]
    verify_verdict(sign_verdict(_verdict(), old), ring)
    verify_verdict(sign_verdict(_verdict(), new), ring)
    with pytest.raises(SignatureError, match="not among"):
        verify_verdict(sign_verdict(_verdict(), new_private_key("2024")), ring)


@given(EVENT_STRATEGIES[ControlUpdate])
def test_control_records_are_signed_like_verdicts(update: ControlUpdate) -> None:
    private = new_private_key("ops")
    signed_update = sign_record(update, private)
    verify_record(decode(encode(signed_update), ControlUpdate), public_key(private))
    lifted = dataclasses.replace(signed_update, values={"budget_usd_per_hour": 1e9})
    with pytest.raises(SignatureError, match="signature does not match"):
        verify_record(lifted, public_key(private))
    with pytest.raises(SignatureError, match="unsigned"):
        verify_record(dataclasses.replace(update, signature=""), private)
