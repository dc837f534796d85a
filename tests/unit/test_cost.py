"""Cost arithmetic against hand-computed examples."""

from __future__ import annotations

import pytest

from agents import PRICES


def test_aws_x86_compute_request_and_egress() -> None:
    # 100.2 ms bills as 101 ms; 1024 MB = 1 GB: 0.101 GB-s × $0.0000166667
    bill = PRICES["aws"].invocation(duration_ms=100.2, memory_mb=1024, egress_bytes=2_000_000)
    assert bill.billed_duration_ms == 101
    assert bill.compute_usd == pytest.approx(0.101 * 0.0000166667)
    assert bill.request_usd == pytest.approx(0.0000002)
    assert bill.egress_usd == pytest.approx(0.002 * 0.09)  # 2 MB at $0.09/GB


def test_aws_arm64_is_cheaper_per_gb_second() -> None:
    # 2 s at 512 MB = 1 GB-s
    arm = PRICES["aws-arm64"].invocation(duration_ms=2000, memory_mb=512)
    x86 = PRICES["aws"].invocation(duration_ms=2000, memory_mb=512)
    assert arm.compute_usd == pytest.approx(0.0000133334)
    assert x86.compute_usd == pytest.approx(0.0000166667)


def test_zero_duration_bills_one_granule() -> None:
    bill = PRICES["aws"].invocation(duration_ms=0, memory_mb=128)
    assert bill.billed_duration_ms == 1
    assert bill.compute_usd == pytest.approx(0.001 * 0.125 * 0.0000166667)


def test_every_price_names_its_source() -> None:
    assert all("checked" in p.source for p in PRICES.values())
