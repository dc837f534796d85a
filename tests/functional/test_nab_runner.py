"""The NAB runner and ``governor bench nab`` on a tiny NAB-layout folder."""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar, cast

import pytest

from streams.bench.nab import open_corpus, run_corpus
from streams.cli import main
from streams.detectors import Detector, Features

START = datetime(2024, 1, 1)
ROWS = {"catA/spiky.csv": 300, "catB/flat.csv": 200}
WINDOW = (240, 259)  # rows of catA/spiky.csv's one window


def stamp(row: int) -> str:
    return (START + timedelta(minutes=5 * row)).strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture
def nab(tmp_path: Path) -> Path:
    """A NAB folder: two categories, 500 rows, one window round a spike at row 250."""
    root = tmp_path / "nab"
    for key, n in ROWS.items():
        path = root / "data" / key
        path.parent.mkdir(parents=True)
        values = [10.0 + math.sin(i / 7) + (40.0 if key.startswith("catA") and i == 250 else 0)
                  for i in range(n)]
        path.write_text("timestamp,value\n" + "".join(
            f"{stamp(i)},{v!r}\n" for i, v in enumerate(values)))
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps({
        "catA/spiky.csv": [[stamp(WINDOW[0]) + ".000000", stamp(WINDOW[1]) + ".000000"]],
        "catB/flat.csv": []}))
    return root


class Recorder:
    """The detector interface the runner uses, logging every call; scores a fixed 0.3."""

    calls: ClassVar[list[tuple[str, float, float]]] = []
    threshold = 1.0

    def learn_one(self, x: Features) -> None:
        self.calls.append(("learn", x["t"], x["value"]))

    def score_one(self, x: Features) -> float:
        self.calls.append(("score", x["t"], x["value"]))
        return 0.3

    def calibrated(self, score: float) -> float:
        return score


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_results_follow_nabs_layout(nab: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = run_corpus(open_corpus(nab), out, "robust_zscore", workers=1)
    assert [s.key for s in run.series] == sorted(ROWS)
    for key, n in ROWS.items():
        category, name = key.split("/")
        rows = read(out / "robust_zscore" / category / f"robust_zscore_{name}")
        assert len(rows) == n and list(rows[0]) == ["timestamp", "value", "anomaly_score",
                                                    "label"]
        assert all(0.0 <= float(r["anomaly_score"]) <= 1.0 for r in rows)
        assert [r["timestamp"] for r in rows] == [stamp(i) for i in range(n)]
        inside = [i for i, r in enumerate(rows) if r["label"] == "1"]
        assert inside == (list(range(WINDOW[0], WINDOW[1] + 1)) if key.startswith("catA")
                          else [])
    spiky = read(out / "robust_zscore" / "catA" / "robust_zscore_spiky.csv")
    assert max(range(300), key=lambda i: float(spiky[i]["anomaly_score"])) == 250


def test_the_data_folder_itself_is_accepted(nab: Path, tmp_path: Path) -> None:
    assert open_corpus(nab / "data").root == nab


def test_the_detector_runs_strictly_online(nab: Path, tmp_path: Path) -> None:
    Recorder.calls.clear()
    run_corpus(open_corpus(nab), tmp_path / "out", "recorder", workers=1,
               factory=cast(Callable[[], Detector], Recorder))
    for _, n in sorted(ROWS.items()):  # inline, series run in key order
        calls, Recorder.calls[:] = Recorder.calls[:2 * n], Recorder.calls[2 * n:]
        times = [(START.replace(tzinfo=UTC) + timedelta(minutes=5 * i)).timestamp()
                 for i in range(n)]  # NAB's naive timestamps read as UTC
        # score row i, learn row i, and only then score row i + 1
        assert [call[:2] for call in calls] == [
            (kind, t) for t in times for kind in ("score", "learn")]
        assert all(calls[2 * i][1:] == calls[2 * i + 1][1:] for i in range(n))
    assert Recorder.calls == []


def test_the_cli_prints_the_report_and_ends_with_the_standard_score(
        nab: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "nab", "--data", str(nab), "--out", str(tmp_path / "out"),
                 "--detector", "robust_zscore", "--workers", "2"]) == 0
    lines = capsys.readouterr().out.rstrip("\n").split("\n")
    assert re.fullmatch(r"nab standard: -?\d+\.\d", lines[-1])
    text = "\n".join(lines)
    for word in ("standard", "reward_low_FP_rate", "reward_low_FN_rate", "catA", "catB",
                 "wall time"):
        assert word in text
    assert (tmp_path / "out" / "robust_zscore" / "catB" / "robust_zscore_flat.csv").exists()


@pytest.mark.parametrize(("damage", "message"), [
    (lambda root: (root / "data" / "catA" / "spiky.csv").write_text(
        "timestamp,value\n2024-01-01 00:00:00,1.0\n2024-01-01 00:05:00,abc\n"),
     r"spiky\.csv: row 2 \(line 3\): value 'abc' is not a finite number"),
    (lambda root: (root / "labels" / "combined_windows.json").write_text("{}"),
     r"combined_windows\.json: no entry for catA/spiky\.csv"),
    (lambda root: (root / "labels" / "combined_windows.json").unlink(),
     r"combined_windows\.json: missing"),
    (lambda root: (root / "data" / "catB" / "flat.csv").write_text("time,v\n1,2\n"),
     r"flat\.csv: the header 'time,v' lacks the columns timestamp and value"),
])
def test_bad_input_is_a_clear_error(nab: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str],
                                    damage: Callable[[Path], object],
                                    message: str) -> None:
    damage(nab)
    assert main(["bench", "nab", "--data", str(nab), "--out", str(tmp_path / "out"),
                 "--detector", "robust_zscore", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("governor: error: ") and re.search(message, err), err


def test_unknown_detectors_and_folders_are_clear_errors(
        nab: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "nab", "--data", str(nab), "--out", str(tmp_path),
                 "--detector", "nope"]) == 2
    assert "unknown detector 'nope'; known: " in capsys.readouterr().err
    assert main(["bench", "nab", "--data", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "not a NAB folder" in capsys.readouterr().err


def test_leave_one_category_out_scores_each_category_with_parameters_chosen_without_it(
        nab: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from streams.bench.nab.crossval import ALARMS, HOLDS, crossvalidate

    cv = crossvalidate(nab, tmp_path / "cv", workers=1)
    assert [f.category for f in cv.folds] == ["catA", "catB"]
    for fold in cv.folds:
        assert fold.chosen[0] in ALARMS and fold.chosen[1] in HOLDS
    catb = cv.folds[1]
    assert catb.held_perfect == catb.held_null == 0  # no window: counts only its false alarms
    assert catb.held_score != catb.held_score  # NaN: not normalisable alone
    assert main(["bench", "nab", "--data", str(nab), "--out", str(tmp_path / "cv2"), "--cv",
                 "--workers", "1"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"nab held-out: -?\d+\.\d \(in-sample -?\d+\.\d\)", last)
