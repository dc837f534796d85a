"""A detector made of detectors: combines their calibrated scores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streams.detectors.base import Detector, Features
from streams.state import Reader

MAX_CHILDREN = 16
"""Children a combiner may have in a snapshot (the registry's have two)."""


class Combiner(Detector):
    """Mean of the ``top_k`` highest calibrated child scores (``top_k=1``: the max).

    The combined calibrated score ``c`` is reported as the raw score ``c / (1 - c)``
    against a threshold of 1, so :meth:`calibrated` gives ``c`` back. The gates nest:
    a point the combiner flags is offered to no child (until the combiner's own
    patience runs out), and each child still refuses what it flags itself, so a
    sustained new level flagged by a child is learned after both patiences.
    :meth:`rebaseline` rebaselines every child. The combiner warms up with its quickest
    child (and scores 0 until then); each child scores 0 until it is warm. Its state
    holds its children's.

    >>> from streams.detectors import EWMAZScore, RobustZScore
    >>> d = Combiner([RobustZScore("cost", warmup=3), EWMAZScore("cost", warmup=3)])
    >>> for v in (1.0, 1.1, 0.9, 1.0):
    ...     d.learn_one({"cost": v})
    >>> d.calibrated(d.score_one({"cost": 1.0})) < 0.5 < d.calibrated(d.score_one({"cost": 9.0}))
    True
    """

    name = "combined"

    def __init__(self, children: Sequence[Detector], top_k: int = 1, *,
                 patience: int | None = 30, memory: int = 500) -> None:
        if not children or not 1 <= top_k <= len(children):
            raise ValueError("need children and 1 <= top_k <= len(children)")
        super().__init__(threshold=1.0, warmup=min(c.warmup for c in children),
                         patience=patience, memory=memory, direction="both")
        self.children = list(children)
        self.top_k = top_k

    def _score(self, x: Features) -> float:
        scores = sorted((c.calibrated(c.score_one(x)) for c in self.children), reverse=True)
        combined = sum(scores[:self.top_k]) / self.top_k
        return combined / (1.0 - combined) if combined < 1.0 else float("inf")

    def _learn(self, x: Features) -> bool:
        before = sum(child.n_learned for child in self.children)
        for child in self.children:
            child.learn_one(x)
        return sum(child.n_learned for child in self.children) > before

    def _forget(self) -> None:
        for child in self.children:
            child.rebaseline()

    def _state(self) -> dict[str, Any]:
        return {"top_k": self.top_k, "children": [c.to_state() for c in self.children]}

    @classmethod
    def _from_state(cls, r: Reader) -> Combiner:
        where = f"{r.where}.children"
        children = [Detector.from_state(child, f"{where}[{i}]")
                    for i, child in enumerate(r.items("children", MAX_CHILDREN))]
        return cls(children, top_k=r.integer("top_k", 1, MAX_CHILDREN))
