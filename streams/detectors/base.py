"""The detector interface every implementation follows."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar

Features = dict[str, float]


class Detector(ABC):
    """An online anomaly detector over one function's feature windows.

    ``score_one`` must not learn; ``learn_one`` is called only with windows the
    caller accepts as normal, so a detector never learns from what it flags.
    """

    name: ClassVar[str]

    @abstractmethod
    def learn_one(self, x: Features) -> None:
        """Update the baseline with a normal window."""

    @abstractmethod
    def score_one(self, x: Features) -> float:
        """Anomaly score of ``x``: higher is more anomalous; 0 during warm-up."""

    @property
    @abstractmethod
    def threshold(self) -> float:
        """Score at and above which a window is anomalous."""

    def calibrated(self, score: float) -> float:
        """``score`` mapped into [0, 1]; 0.5 at the threshold."""
        return 1.0 - math.exp(-math.log(2.0) * max(score, 0.0) / self.threshold)
