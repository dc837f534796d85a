"""Per-function online anomaly detectors: one base class, one module each."""

from streams.detectors.base import Detector
from streams.detectors.zscore import RobustZScore

__all__ = ["Detector", "RobustZScore"]
