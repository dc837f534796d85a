"""The Numenta Anomaly Benchmark: run a detector online over NAB's series and score it.

:mod:`~streams.bench.nab.scoring` is NAB's scoring (pure); :mod:`~streams.bench.nab.corpus`
reads NAB's folder layout; :mod:`~streams.bench.nab.runner` runs a detector and writes
NAB's results files; :mod:`~streams.bench.nab.report` scores a run and renders
``governor bench nab``'s report.
"""

from streams.bench.nab.corpus import Corpus, open_corpus, read_series
from streams.bench.nab.report import Report, bench, format_report, score_run
from streams.bench.nab.runner import (
    Run,
    SeriesResult,
    default_detector,
    make_detector,
    registry,
    run_corpus,
    score_online,
)
from streams.bench.nab.scoring import (
    PROFILES,
    REWARD_LOW_FN_RATE,
    REWARD_LOW_FP_RATE,
    STANDARD,
    Profile,
    ProfileResult,
    ScoredSeries,
    ThresholdScore,
    evaluate,
    normalize,
    optimize,
    score_at,
    sweep,
)

__all__ = [
    "PROFILES", "REWARD_LOW_FN_RATE", "REWARD_LOW_FP_RATE", "STANDARD", "Corpus", "Profile",
    "ProfileResult", "Report", "Run", "ScoredSeries", "SeriesResult", "ThresholdScore", "bench",
    "default_detector", "evaluate", "format_report", "make_detector", "normalize",
    "open_corpus", "optimize", "read_series", "registry", "run_corpus", "score_at",
    "score_online", "score_run", "sweep",
]
