"""``governor bench loop`` on its own embedded stack, shortened to two incidents."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streams.bench.loop import bench
from streams.settings import Settings

pytestmark = pytest.mark.integration


def test_loop_benchmark_measures_enforcement_and_pages(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("GOVERNOR_")]:
        monkeypatch.delenv(name)
    report = bench(Settings(data_dir=tmp_path), functions=2, pace="demo", warmup_s=16,
                   every_s=1, duration_s=8, settle_s=25)
    assert len(report.incidents) == 2
    # enforced and paged after the incident began; how fast is the benchmark's figure
    assert len(report.to_enforce) == 2 and all(t > 0 for t in report.to_enforce)
    assert len(report.to_page) == 2 and all(t > 0 for t in report.to_page)
    assert report.resolved >= 1
    lines = report.lines()
    assert lines[0].startswith("settings (demo): window 2 s")
    assert lines[-1].startswith("loop p95: ") and lines[-1].endswith("s to enforce")
