"""Multivariate behaviour model: River's Half-Space Trees on min-max scaled features."""

from __future__ import annotations

import math

from river import anomaly, preprocessing, stats

from streams.detectors.base import Detector, Features, value_of


class HalfSpaceScore(Detector):
    """How much emptier than usual the region of the whole feature vector is, as a log.

    Every numeric feature of the first learned ``x`` except ``time_feature`` is
    min-max scaled (River ``MinMaxScaler``, over all learned points or the last
    ``scale_window``) and fed to a seeded River ``HalfSpaceTrees``. River's score is
    1 − the point's depth-weighted mass; this detector reports ln(typical mass /
    mass), the typical log-mass being an exponentially weighted mean (``EWMean``)
    over learned points: 0 is an ordinary point, ln 20 ≈ 3 (the default threshold)
    one in a region 20 times emptier than usual. The trees cannot tell how far past
    a feature's learned range a value lies, so each half range past it adds the
    threshold. The trees judge the joint distribution, so drops count as much as
    rises (``direction`` is always ``"both"``). Scores are 0 until the first tree
    window (``window`` points) is full. A point missing one of the features scores
    0 and is not learned; features that appear later are ignored until
    :meth:`rebaseline`, which keeps nothing (the trees are rebuilt, with the same
    seed, from the next learned point).

    >>> d = HalfSpaceScore(window=50, seed=7)
    >>> for i in range(200):
    ...     d.learn_one({"rps": 10.0 + i % 5, "cost": 1.0 + (i % 5) / 10})
    >>> usual, costly = {"rps": 12.0, "cost": 1.2}, {"rps": 12.0, "cost": 9.0}
    >>> d.score_one(usual) < d.threshold < d.score_one(costly)
    True
    """

    name = "half_space_trees"

    def __init__(self, n_trees: int = 10, height: int = 5, window: int = 100,
                 scale_window: int | None = None, threshold: float = 3.0, seed: int = 42, *,
                 patience: int | None = 30, memory: int = 500,
                 time_feature: str = "t") -> None:
        super().__init__(threshold=threshold, warmup=window, patience=patience, memory=memory,
                         direction="both")
        self.n_trees = n_trees
        self.height = height
        self.window = window
        self.scale_window = scale_window
        self.seed = seed
        self.time_feature = time_feature
        self._features: tuple[str, ...] = ()
        self._scaler, self._trees, self._typical = self._new()

    def _new(self) -> tuple[preprocessing.MinMaxScaler, anomaly.HalfSpaceTrees, stats.EWMean]:
        return (preprocessing.MinMaxScaler(self.scale_window),
                anomaly.HalfSpaceTrees(n_trees=self.n_trees, height=self.height,
                                       window_size=self.window, seed=self.seed),
                stats.EWMean(0.01))

    def _scaled(self, x: Features) -> dict[str, float] | None:
        if not self._features:
            return None
        vector = {}
        for feature in self._features:
            value = value_of(x, feature)
            if value is None:
                return None
            vector[feature] = value
        scaled = self._scaler.transform_one(vector)
        for feature, value in vector.items():  # River maps any value of a flat feature to 0
            low = self._scaler.min[feature].get()
            if low == self._scaler.max[feature].get() and value != low:
                scaled[feature] = 2.0 if value > low else -1.0
        return scaled

    def _log_mass(self, scaled: dict[str, float]) -> float:
        mass = 1.0 - float(self._trees.score_one(scaled))
        return math.log(max(mass, 1e-9))

    def _score(self, x: Features) -> float:
        scaled = self._scaled(x)
        if scaled is None:
            return 0.0
        excess = max(max(s - 1.0, -s) for s in scaled.values())
        return self._typical.get() - self._log_mass(scaled) + 2 * self._threshold * max(excess, 0)

    def _learn(self, x: Features) -> bool:
        if not self._features:
            self._features = tuple(sorted(k for k in x if k != self.time_feature
                                          and value_of(x, k) is not None))
        values = {f: value_of(x, f) for f in self._features}
        vector = {f: v for f, v in values.items() if v is not None}
        if not vector or len(vector) < len(values):
            return False
        self._scaler.learn_one(vector)
        scaled = self._scaler.transform_one(vector)
        if self.n_learned >= self.window:
            self._typical.update(self._log_mass(scaled))
        self._trees.learn_one(scaled)
        return True

    def _forget(self) -> None:
        self._features = ()
        self._scaler, self._trees, self._typical = self._new()
