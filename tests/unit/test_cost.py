"""Cost arithmetic against hand-computed examples, per provider."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents import ConfigurationError, load_prices

PRICES = load_prices()


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


def test_gcp_bills_memory_and_cpu_in_100ms_steps() -> None:
    # 150 ms → 200 ms; 256 MB comes with 0.4 GHz
    # memory 0.2 s × 0.25 GB × $0.0000025 + CPU 0.2 s × 0.4 GHz × $0.00001
    bill = PRICES["gcp"].invocation(duration_ms=150, memory_mb=256, egress_bytes=10**9)
    assert bill.billed_duration_ms == 200
    assert bill.compute_usd == pytest.approx(0.2 * 0.25 * 0.0000025 + 0.2 * 0.4 * 0.00001)
    assert bill.request_usd == pytest.approx(0.0000004)
    assert bill.egress_usd == pytest.approx(0.12)


def test_azure_rounds_memory_to_128mb_and_duration_to_100ms_minimum() -> None:
    # 40 ms → 100 ms minimum; 200 MB → 256 MB: 0.1 s × 0.25 GB × $0.000016
    bill = PRICES["azure"].invocation(duration_ms=40, memory_mb=200)
    assert bill.billed_duration_ms == 100
    assert bill.compute_usd == pytest.approx(0.1 * 0.25 * 0.000016)
    # past the minimum, 1 ms granularity: 250.5 ms → 251 ms
    assert PRICES["azure"].invocation(duration_ms=250.5, memory_mb=128).billed_duration_ms == 251


def test_every_price_names_its_source_and_date() -> None:
    assert {"aws", "aws-arm64", "gcp", "azure"} <= set(PRICES)
    for price in PRICES.values():
        assert price.source.startswith("https://") and price.checked.startswith("20")


def test_a_prices_file_overrides_fields_and_adds_entries(tmp_path: Path) -> None:
    override = tmp_path / "prices.toml"
    override.write_text('[aws]\ngb_second_usd = 0.00001\n\n'
                        '[onprem]\ngb_second_usd = 0.000001\nrequest_usd = 0.0\n')
    prices = load_prices(override)
    assert prices["aws"].gb_second_usd == 0.00001
    assert prices["aws"].request_usd == PRICES["aws"].request_usd  # untouched field kept
    assert prices["onprem"].invocation(duration_ms=1000, memory_mb=1024).compute_usd == 0.000001


def test_a_bad_prices_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "prices.toml"
    bad.write_text("[aws]\ngb_second_usd = 1\ncost_per_moon = 2\n")
    with pytest.raises(ConfigurationError, match=r"unknown fields.*cost_per_moon"):
        load_prices(bad)
    with pytest.raises(ConfigurationError, match="cannot read price catalogue"):
        load_prices(tmp_path / "missing.toml")
