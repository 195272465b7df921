"""The error streams of the protocol of Cerqueira et al. 2026, built with River's generators.

Separate from bench/paper.py so that the slow part (a Hoeffding tree over 300,000-360,000 events
per stream) runs once and is cached under ``bench/.cache``; the file is rebuilt deterministically
when missing.

The schedule follows the paper's code (``src/streams/synth.py``, ``CustomDriftStream``): the
stream starts with the generator's first function; 30 drifts, the first at 10,000 events and then
one every ``10,000 + width`` events; the function after each drift is drawn with
``np.random.seed(123); np.random.choice(others)``; after the 30th drift the stream keeps the
29th drift's function (the paper appends the current function again, so its last change is no
change of concept). A gradual drift of width ``w`` mixes the two concepts with MOA's sigmoid
centred at ``position + w/2`` (the paper's truth is the interval ``(position, position + w)``);
an abrupt drift switches at ``position``. Stream length ``30 * (10,000 + w + 1) + 1`` and the
first 1,000 events train only (``min_training_size``), as in the paper's prequential workflow.
"""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

N_DRIFTS = 30
DRIFT_EVERY = 10_000
GRADUAL_WIDTH = 2_000
MIN_TRAINING = 1_000
PAPER_SEED = 123
FUNCTIONS = {"Agrawal": list(range(10)), "SEA": list(range(4)), "STAGGER": list(range(3))}
"""River numbers functions from 0; the paper's capymoa generators from 1 (function 1 = River's 0)."""

STREAMS_VERSION = 1
"""Bump when :func:`build` changes: cached streams of another version are not read."""

CACHE = Path(os.path.dirname(os.path.abspath(__file__))) / ".cache"


def schedule(generator: str, width: int) -> tuple[list[int], list[int]]:
    """The function of each concept (31) and the start of each drift (30), as the paper draws them."""
    rs = np.random.RandomState(PAPER_SEED)
    current = FUNCTIONS[generator][0]
    functions, starts = [current], []
    point = DRIFT_EVERY
    for i in range(N_DRIFTS):
        starts.append(point)
        if i < N_DRIFTS - 1:
            current = int(rs.choice([f for f in FUNCTIONS[generator] if f != current]))
            point += DRIFT_EVERY + width
        functions.append(current)
    return functions, starts


def length(width: int) -> int:
    return N_DRIFTS * (DRIFT_EVERY + width + 1) + 1


def _generator(name: str, function: int, seed: int) -> Any:
    from river.datasets import synth

    if name == "SEA":
        return synth.SEA(variant=function, seed=seed)
    if name == "Agrawal":
        return synth.Agrawal(classification_function=function, seed=seed)
    return synth.STAGGER(classification_function=function, seed=seed)


def build(generator: str, width: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, prediction, starts): labels and the Hoeffding tree's test-then-train predictions for
    every event (-1 during the first ``MIN_TRAINING`` events), and the drift starts."""
    from river import tree

    functions, starts = schedule(generator, width)
    n = length(width)
    concepts = [iter(_generator(generator, f, seed * 1000 + i)) for i, f in enumerate(functions)]
    rng = np.random.default_rng([seed, width])
    u = rng.random(n)
    model = tree.HoeffdingTreeClassifier()
    y_out = np.empty(n, np.int64)
    p_out = np.full(n, -1, np.int64)
    j = 0  # index of the drift that comes next
    for t in range(n):
        while j < N_DRIFTS and t >= starts[j] + max(width, 1) * 4:  # past the drift: the next one
            j += 1
        k = j  # concept of the stream before drift j
        if j < N_DRIFTS and t >= starts[j] - max(width, 1) * 4:
            if width == 0:
                new = t >= starts[j]
            else:
                v = -4.0 * (t - (starts[j] + width / 2)) / width
                new = u[t] < 1.0 / (1.0 + math.exp(min(v, 700.0)))
            k = j + 1 if new else j
        x, y = next(concepts[k])
        if t >= MIN_TRAINING:
            p_out[t] = int(model.predict_one(x))
        model.learn_one(x, y)
        y_out[t] = int(y)
    return y_out, p_out, np.asarray(starts)


def cached(generator: str, width: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`build`, through ``bench/.cache`` (keyed by the arguments and :data:`STREAMS_VERSION`)."""
    path = CACHE / f"{generator}-w{width}-s{seed}-v{STREAMS_VERSION}.npz"
    if path.exists():
        with np.load(path) as f:
            return f["y"], f["p"], f["starts"]
    y, p, starts = build(generator, width, seed)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, y=y, p=p, starts=starts)
    tmp.replace(path)
    return y, p, starts


if __name__ == "__main__":
    import sys
    import time

    t0 = time.perf_counter()
    g, w = sys.argv[1], int(sys.argv[2])
    y, p, s = cached(g, w)
    err = (p[MIN_TRAINING:] != y[MIN_TRAINING:]).mean()
    print(g, w, f"error {err:.3f}", f"{time.perf_counter() - t0:.0f}s", list(itertools.islice(s, 4)))
