"""The learned state of the River models our monitors use, as plain JSON data, and back.

Monitor state is stored in ``state.db`` and in the Kafka changelog; whoever can write either
must not be able to run code in the daemon, so nothing there is pickled. Each model's learned
parameters are written out explicitly and the model is rebuilt from them on load: the rebuilt
model predicts and keeps learning exactly as the original would have (tests compare the two).

- the domain classifier's pipeline: ``StandardScaler`` (counts, means, variances) and
  ``LogisticRegression`` (weights, intercept, the SGD step count);
- ``HalfSpaceTrees``: every tree as its split features, split points and node masses.

Numbers that are not finite are written as the strings ``"inf"``, ``"-inf"`` and ``"nan"``
(JSON has no such numbers).

>>> from river import compose, linear_model, optim, preprocessing
>>> def fresh():
...     return compose.Pipeline(preprocessing.StandardScaler(),
...                             linear_model.LogisticRegression(optimizer=optim.SGD(0.1)))
>>> a = fresh()
>>> for i in range(20):
...     a.learn_one({"x": float(i % 7), "c=red": 1.0}, i % 3 == 0)
>>> state = logistic_state(a)
>>> sorted(state), state["scaler"]["counts"]
(['intercept', 'iterations', 'scaler', 'weights'], {'x': 20, 'c=red': 20})
>>> b = restore_logistic(fresh(), state)
>>> a.predict_proba_one({"x": 2.0}) == b.predict_proba_one({"x": 2.0})
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from driftwarden.detectors.lazy import lazy_module

anomaly = lazy_module("river.anomaly")
river_utils = lazy_module("river.utils")


def number(x: float) -> float | str:
    """A float as JSON: itself when finite, else ``"inf"``, ``"-inf"`` or ``"nan"``.

    >>> number(1.5), number(float("inf")), number(float("nan"))
    (1.5, 'inf', 'nan')
    """
    x = float(x)
    return x if math.isfinite(x) else str(x)


def unnumber(v: Any) -> float:
    """The float :func:`number` wrote (a ``null`` reads as NaN); ValueError for anything else.

    >>> unnumber("-inf"), unnumber(2), unnumber(None)
    (-inf, 2.0, nan)
    >>> unnumber("__import__('os')")
    Traceback (most recent call last):
    ...
    ValueError: not a number in a monitor state: "__import__('os')"
    """
    if v is None:
        return math.nan
    if isinstance(v, str):
        if v not in ("inf", "-inf", "nan"):
            raise ValueError(f"not a number in a monitor state: {v!r}")
        return float(v)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"not a number in a monitor state: {v!r}")
    return float(v)


def _numbers(d: Mapping[str, float]) -> dict[str, float | str]:
    return {str(k): number(v) for k, v in d.items()}


def _unnumbers(d: Mapping[str, Any]) -> dict[str, float]:
    return {str(k): unnumber(v) for k, v in d.items()}


def logistic_state(pipeline: Any) -> dict[str, Any]:
    """The learned parameters of a ``StandardScaler | LogisticRegression`` pipeline."""
    scaler, model = pipeline.steps.values()
    return {
        "scaler": {
            "counts": {str(k): int(v) for k, v in scaler.counts.items()},
            "means": _numbers(scaler.means),
            "vars": _numbers(scaler.vars),
        },
        "weights": _numbers(model.weights),
        "intercept": number(model.intercept),
        "iterations": int(model.optimizer.n_iterations),
    }


def restore_logistic(pipeline: Any, state: Mapping[str, Any]) -> Any:
    """``pipeline`` (fresh, built with the original's arguments) with the parameters of
    :func:`logistic_state` put back; returned for convenience."""
    scaler, model = pipeline.steps.values()
    s = state["scaler"]
    scaler.counts.clear()
    scaler.counts.update({str(k): int(v) for k, v in s["counts"].items()})
    scaler.means.clear()
    scaler.means.update(_unnumbers(s["means"]))
    scaler.vars.clear()
    scaler.vars.update(_unnumbers(s["vars"]))
    model._weights = river_utils.VectorDict(_unnumbers(state["weights"]))  # River has no public setter
    model.intercept = unnumber(state["intercept"])
    model.optimizer.n_iterations = int(state["iterations"])
    return pipeline


def _tree_state(node: Any, depth: int) -> list[Any]:
    """Pre-order nodes: a branch ``[feature, threshold, l_mass, r_mass]``, a leaf ``[l_mass, r_mass]``."""
    if depth == 0:
        return [[int(node.l_mass), int(node.r_mass)]]
    left, right = node.children
    here = [str(node.feature), number(node.threshold), int(node.l_mass), int(node.r_mass)]
    return [here, *_tree_state(left, depth - 1), *_tree_state(right, depth - 1)]


def _build_tree(nodes: list[Any], at: int, depth: int) -> tuple[Any, int]:
    # Imported here, not lazily at module level: finding ``river.tree.padded`` runs ``river.tree``'s
    # ``__init__`` (its splitters import river.proba and SciPy's statistics: seconds at every daemon start).
    from river.tree import padded

    item = nodes[at]
    if depth == 0:
        l_mass, r_mass = (int(v) for v in item)
        return padded.PaddedLeaf(l_mass=l_mass, r_mass=r_mass), at + 1
    feature, threshold, l_mass, r_mass = item
    left, at = _build_tree(nodes, at + 1, depth - 1)
    right, at = _build_tree(nodes, at, depth - 1)
    branch = padded.PaddedBranch(
        left=left,
        right=right,
        feature=str(feature),
        threshold=unnumber(threshold),
        l_mass=int(l_mass),
        r_mass=int(r_mass),
    )
    return branch, at


def hst_state(hst: Any) -> dict[str, Any]:
    """A ``HalfSpaceTrees``' trees (features, split points, masses) and its window position."""
    return {
        "limits": {str(k): [number(lo), number(hi)] for k, (lo, hi) in hst.limits.items()},
        "trees": [_tree_state(t, hst.height) for t in hst.trees],
        "counter": int(hst.counter),
        "first_window": bool(hst._first_window),
    }


def hst_from_state(state: Mapping[str, Any], n_trees: int, height: int, window_size: int, seed: int) -> Any:
    """The ``HalfSpaceTrees`` :func:`hst_state` describes (its arguments given by the monitor).

    >>> import random
    >>> rng = random.Random(3)
    >>> rows = [{"a": rng.random(), "b": rng.random()} for _ in range(60)]
    >>> h = anomaly.HalfSpaceTrees(n_trees=3, height=4, window_size=20, seed=1)
    >>> for r in rows:
    ...     h.learn_one(r)
    >>> g = hst_from_state(hst_state(h), n_trees=3, height=4, window_size=20, seed=1)
    >>> [h.score_one(r) for r in rows] == [g.score_one(r) for r in rows]
    True
    """
    limits = {str(k): (unnumber(lo), unnumber(hi)) for k, (lo, hi) in state["limits"].items()}
    hst = anomaly.HalfSpaceTrees(n_trees=n_trees, height=height, window_size=window_size, limits=limits, seed=seed)
    trees = []
    for nodes in state["trees"]:
        tree, end = _build_tree(list(nodes), 0, height)
        if end != len(nodes):
            raise ValueError(f"a half-space tree of height {height} has {end} nodes, not {len(nodes)}")
        trees.append(tree)
    if len(trees) not in (0, n_trees):
        raise ValueError(f"{len(trees)} half-space trees in the state, not {n_trees}")
    hst.trees = trees
    hst._tree_nodes = [list(t.iter_dfs()) for t in trees]  # River walks these to swap the masses
    hst.counter = int(state["counter"])
    hst._first_window = bool(state["first_window"])
    return hst


# -- River's streaming detectors: their objects as tagged plain data, from an allow-list ----------

RIVER_CLASSES = frozenset(
    {
        "river.drift.adwin:ADWIN",
        "river.drift.binary.ddm:DDM",
        "river.drift.binary.eddm:EDDM",
        "river.drift.binary.hddm_a:HDDMA",
        "river.drift.binary.hddm_w:HDDMW",
        "river.drift.binary.hddm_w:SampleInfo",
        "river.stats.mean:Mean",
        "river.stats.var:Var",
        "river.stats.ewmean:EWMean",
    }
)
"""Python classes of River whose attributes a detector state may hold; no other class is built."""

RUST_CLASSES = frozenset({"river._river_rust.drift:AdaptiveWindowing", "river._river_rust.stats:RsEWMean"})
"""River's Rust objects (ADWIN's window, HDDM_W's weighted mean): saved as their constructor
arguments and the bytes of River's own serialization of their fixed fields, read back by River's
Rust deserializer only (a value that does not fit is an error, never code)."""


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _class(name: str, allowed: frozenset[str]) -> type:
    if name not in allowed:
        raise ValueError(f"class {name!r} is not allowed in a monitor state")
    module, qualname = name.split(":")
    from driftwarden.detectors.lazy import import_leaf

    return getattr(import_leaf(module), qualname)  # type: ignore[no-any-return]


def river_to_plain(obj: Any) -> Any:
    """A River detector (and what it holds) as JSON data: numbers, strings, lists, maps; objects as
    ``{"class": ..., "attrs": {...}}`` (``{"rust": ..., "args": [...], "bytes": [...]}``) of allowed
    classes only; floats that are not finite as ``{"float": "inf"}``.

    >>> from driftwarden.detectors.lazy import import_leaf
    >>> d = import_leaf("river.drift.binary.ddm").DDM()
    >>> for x in [0, 1, 0, 0, 1] * 20:
    ...     _ = d.update(x)
    >>> e = plain_to_river(river_to_plain(d))
    >>> (type(e) is type(d), e._p.get() == d._p.get(), e._ps_min == d._ps_min)
    (True, True, True)
    """
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"float": str(obj)}
    if isinstance(obj, list):
        return [river_to_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return {"tuple": [river_to_plain(v) for v in obj]}
    if isinstance(obj, dict) and all(isinstance(k, str) for k in obj):
        return {"map": {k: river_to_plain(v) for k, v in obj.items()}}
    name = _name(type(obj))
    if name in RUST_CLASSES:
        _, args, state, *_ = obj.__reduce_ex__(4)
        return {"rust": name, "args": [river_to_plain(a) for a in args[1:]], "bytes": list(state)}
    if name in RIVER_CLASSES:
        return {"class": name, "attrs": {k: river_to_plain(v) for k, v in vars(obj).items()}}
    raise TypeError(f"{name} is not an allowed River class for a monitor state")


def plain_to_river(data: Any) -> Any:
    """The object :func:`river_to_plain` described; ValueError for anything it would not write."""
    if data is None or isinstance(data, bool | int | float | str):
        return data
    if isinstance(data, list):
        return [plain_to_river(v) for v in data]
    if not isinstance(data, dict) or len(data) not in (1, 2, 3):
        raise ValueError(f"not a River detector state: {str(data)[:60]!r}")
    if set(data) == {"float"}:
        return unnumber(data["float"])
    if set(data) == {"tuple"}:
        return tuple(plain_to_river(v) for v in data["tuple"])
    if set(data) == {"map"}:
        return {str(k): plain_to_river(v) for k, v in data["map"].items()}
    if set(data) == {"rust", "args", "bytes"}:
        cls = _class(str(data["rust"]), RUST_CLASSES)
        args = [plain_to_river(a) for a in data["args"]]
        if not all(isinstance(a, int | float) for a in args):
            raise ValueError("the arguments of a River Rust object must be numbers")
        try:  # in C: a list of ints 0-255, anything else is refused (bytes(5) would be 5 zero bytes)
            fields = bytes(data["bytes"]) if isinstance(data["bytes"], list) else None
        except (TypeError, ValueError):
            fields = None
        if fields is None:
            raise ValueError("the bytes of a River Rust object must be a list of numbers 0-255")
        obj = cls.__new__(cls, *args)
        obj.__setstate__(fields)
        return obj
    if set(data) == {"class", "attrs"}:
        cls = _class(str(data["class"]), RIVER_CLASSES)
        obj = object.__new__(cls)  # River's Python classes: plain objects, attributes below
        obj.__dict__.update({str(k): plain_to_river(v) for k, v in data["attrs"].items()})
        return obj
    raise ValueError(f"not a River detector state: {str(data)[:60]!r}")
