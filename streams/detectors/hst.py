"""Multivariate behaviour model: River's Half-Space Trees on min-max scaled features."""

from __future__ import annotations

import math
from typing import Any

from river import anomaly, preprocessing

from streams.detectors.base import Detector, Features, value_of
from streams.detectors.running import EWMean
from streams.state import (
    MAX_ITEMS,
    Reader,
    StateError,
    finite_or_none,
    integer,
    number,
    numbers,
    rows,
    text,
)

MAX_NODES = 2047
"""Nodes a tree may have in a snapshot (height 10)."""


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

    In a snapshot the trees are their nodes' split and masses: River rebuilds the same
    trees from the seed and the features, the masses are put back, and a snapshot whose
    splits differ from what this River builds (another version) is refused.

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

    def _new(self) -> tuple[preprocessing.MinMaxScaler, anomaly.HalfSpaceTrees, EWMean]:
        return (preprocessing.MinMaxScaler(self.scale_window),
                anomaly.HalfSpaceTrees(n_trees=self.n_trees, height=self.height,
                                       window_size=self.window, seed=self.seed),
                EWMean(0.01))

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

    def _state(self) -> dict[str, Any]:
        scaler, trees = self._scaler, self._trees
        if self.scale_window is None:  # [min, max] per feature (null: none seen)
            scale: list[Any] = [
                [finite_or_none(scaler.min[f].get()), finite_or_none(scaler.max[f].get())]
                if f in scaler.min and f in scaler.max else [None, None]
                for f in self._features]
        else:  # the values in the rolling window, oldest first
            scale = [list(scaler.min[f].window.unsorted_window) if f in scaler.min else []
                     for f in self._features]
        return {"n_trees": self.n_trees, "height": self.height, "window": self.window,
                "scale_window": self.scale_window, "seed": self.seed,
                "time_feature": self.time_feature, "features": list(self._features),
                "scale": scale, "typical": self._typical.to_state(),
                "counter": trees.counter, "first_window": trees._first_window,
                "trees": [[[getattr(n, "feature", None), getattr(n, "threshold", None),
                            n.l_mass, n.r_mass] for n in nodes] for nodes in trees._tree_nodes]}

    @classmethod
    def _from_state(cls, r: Reader) -> HalfSpaceScore:
        d = cls(n_trees=r.integer("n_trees", 1, 64), height=r.integer("height", 1, 10),
                window=r.integer("window", 1, MAX_ITEMS),
                scale_window=(r.integer("scale_window", 1, MAX_ITEMS)
                              if r.has("scale_window") else None),
                seed=r.integer("seed"), time_feature=r.text("time_feature"))
        d._features = tuple(r.texts("features", 256, 256))
        d._typical = EWMean.from_state(r.raw("typical"), 0.01, f"{r.where}.typical")
        scale = r.items("scale", len(d._features))
        if len(scale) != len(d._features):
            raise StateError(f"{r.where}.scale: one entry per feature was expected")
        for i, (feature, entry) in enumerate(zip(d._features, scale, strict=True)):
            where = f"{r.where}.scale[{i}]"
            if d.scale_window is None:
                low, high = rows([entry], where, 1, 2)[0]
                if low is not None and high is not None:
                    d._scaler.min[feature].update(number(low, where))
                    d._scaler.max[feature].update(number(high, where))
            else:
                for value in numbers(entry, where, d.scale_window):
                    d._scaler.min[feature].update(value)
                    d._scaler.max[feature].update(value)
        trees = r.items("trees", d.n_trees)
        if trees:
            d._restore_trees(trees, r)
        return d

    def _restore_trees(self, trees: list[Any], r: Reader) -> None:
        """River's trees for the seed and features, with the snapshot's masses."""
        hst = self._trees
        if not self._features or len(trees) != self.n_trees:
            raise StateError(f"{r.where}.trees: {self.n_trees} trees over known features "
                             "were expected")
        hst.learn_one(dict.fromkeys(self._features, 0.0))  # builds them from the seed
        for t, (nodes, saved) in enumerate(zip(hst._tree_nodes, trees, strict=True)):
            where = f"{r.where}.trees[{t}]"
            saved = rows(saved, where, MAX_NODES, 4)
            if len(saved) != len(nodes):
                raise StateError(f"{where}: {len(nodes)} nodes were expected")
            for i, (node, (feature, threshold, l_mass, r_mass)) in enumerate(
                    zip(nodes, saved, strict=True)):
                at = f"{where}[{i}]"
                split = getattr(node, "feature", None), getattr(node, "threshold", None)
                if (split != (None, None) and (text(feature, at) != split[0]
                                              or number(threshold, at) != split[1])):
                    raise StateError(f"{at}: the split differs from the tree River builds "
                                     "for this seed (a snapshot of another River version)")
                node.l_mass = integer(l_mass, at)
                node.r_mass = integer(r_mass, at)
        hst.counter = r.integer("counter", 0, self.window - 1)
        hst._first_window = r.flag("first_window")
