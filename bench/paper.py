"""Concept-drift detection on the protocol of Cerqueira et al. 2026 (KDD, "A Framework for
Evaluating and Benchmarking Concept Drift Detection Methods"), with River's generators.

    .venv/bin/python bench/paper.py [--workers 2] [--kinds adwin,concept_drift,adwin-both] [--seed 1]

Streams (bench/paper_streams.py, cached under bench/.cache): Agrawal, SEA and STAGGER with 30
drifts, the first at 10,000 events and then one every 10,000 (+ width) events, switching among
the generator's functions as the paper's code does; abrupt (width 0) and gradual (width
2,000). A Hoeffding tree (River's, MOA's defaults) predicts then learns every event after the
first 1,000; every monitor kind watches its 0/1 errors (1 = error), at its defaults, through the
same path as ``driftwarden replay``: the monitor the policy loader builds (``registry.build``)
updated with labeled batches of 1,000 events (replay's default batch size).

Metric: the paper's ``EvaluateDriftDetector`` (``src/eval_detector.py``, max_delay 1,000):
each drift's episode holds the alarms after the previous episode up to ``end + 1,000``; an alarm
in ``[start, end + 1,000]`` is a true positive (every such alarm, not only the first), any other
alarm of the episode a false positive, an episode without one a false negative; F1 from those
counts; delay = first hit - start, averaged; false alarms per 1,000 events. ``detected`` is the
share of drifts with at least one hit (the paper's ``episode_recall``), which F1 does not show.
The paper's published best (tuned MOA detectors, Hoeffding tree) is in the same table.

``found`` is the share of changes a monitor noticed *the way the error went*. Here a concept
change often lowers the error (about 10 of 30 on every stream; on STAGGER a never-reset tree at
45 % error may fit the new concept better, 45 % -> 15 %): a one-sided monitor rightly pages no
drift for that, but reports it as a ``drift: false`` signal with ``direction: down``. So a
change that raised the error (mean error over the 1,000 events after it above the 2,000 before)
is found by a drift signal within ``[start, end + 1,000]``, a change that lowered it by a
``down`` signal there; a signal that names no direction (River's two-sided ADWIN, row
``adwin-both``) counts either way. F1, delay and false alarms count drift signals only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, replace
from multiprocessing import Pool
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import paper_streams  # noqa: E402
from driftwarden.detectors.base import Batch  # noqa: E402
from driftwarden.detectors.registry import build  # noqa: E402

MAX_DELAY = 1_000
BATCH = 1_000
STREAMS = (
    ("Agrawal", "abrupt"),
    ("SEA", "abrupt"),
    ("STAGGER", "abrupt"),
    ("Agrawal", "gradual"),
    ("SEA", "gradual"),
    ("STAGGER", "gradual"),
)
WIDTH = {"abrupt": 0, "gradual": paper_streams.GRADUAL_WIDTH}
PAPER_BEST = {
    ("Agrawal", "abrupt"): ("SEED", 0.5823),
    ("SEA", "abrupt"): ("STEPD", 0.4923),
    ("STAGGER", "abrupt"): ("ABCD", 0.4000),
    ("Agrawal", "gradual"): ("STEPD", 0.6118),
    ("SEA", "gradual"): ("SEED", 0.6316),
    ("STAGGER", "gradual"): ("HDDM_W", 0.5000),
}
"""The paper's best F1 per stream (assets/results/synthetic/*,HoeffdingTree,*,results.csv, to 4
places: SEA gradual's 0.6316 is close enough to our scores that the rounded 0.63 would mislead)."""

KINDS = ("adwin", "page_hinkley", "cusum", "ewma", "ddm", "eddm", "hddm_a", "hddm_w", "concept_drift", "adwin-both")
"""Every streaming kind that takes a 0/1 error series (kswin refuses it), at its defaults, and
River's two-sided ADWIN (``adwin-both``: ``direction: both`` at River's ``delta`` 0.002, River's alarms exactly)."""
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {"adwin-both": ("adwin", {"direction": "both", "delta": 0.002})}
"""Rows that are a kind at other parameters: row name -> (kind, parameters)."""
AFTER, BEFORE = 1_000, 2_000
"""Events after a change's end and before its start whose mean errors say which way it went."""


@dataclass(frozen=True)
class Score:
    f1: float
    precision: float
    recall: float
    detected: float
    delay: float | None
    far: float  # false alarms per 1,000 events
    alarms: int
    found: float | None = None  # share of changes noticed the way the error went


def evaluate(alarms: list[int], truths: list[tuple[int, int]], n: int, max_delay: int = MAX_DELAY) -> Score:
    """The paper's ``EvaluateDriftDetector.calc_performance`` (max_early_detection 0).

    >>> s = evaluate([500, 1200, 1250, 2100], [(1000, 1000), (2000, 2000)], 3000, max_delay=200)
    >>> round(s.f1, 3), s.detected, s.delay, s.alarms
    (0.667, 1.0, 150.0, 4)
    """
    preds = np.asarray(alarms)
    tp = fp = fn = hit_episodes = n_alarms = 0
    delays: list[float] = []
    start_next = 0
    for start, end in truths:
        episode = preds[(preds > start_next) & (preds <= end + max_delay)]
        first = None
        for p in episode.tolist():
            n_alarms += 1
            if start <= p <= end + max_delay:
                tp += 1
                first = p if first is None else first
            else:
                fp += 1
        if first is None:
            fn += 1
        else:
            hit_episodes += 1
            delays.append(first - start)
        start_next = end + max_delay
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Score(
        f1=f1,
        precision=precision,
        recall=recall,
        detected=hit_episodes / max(1, len(truths)),
        delay=float(np.mean(delays)) if delays else None,
        far=fp / n * 1000,
        alarms=n_alarms,
    )


def stream(generator: str, mode: str, seed: int = 1) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """(labels, predictions, drift intervals) of one stream; predictions -1 while training only."""
    width = WIDTH[mode]
    y, p, starts = paper_streams.cached(generator, width, seed)
    return y, p, [(int(s), int(s) + width) for s in starts]


Found = tuple[int, bool, str | None]
"""A signal: (event, drift, direction or None)."""


def signals(kind: str, params: dict[str, Any], y: np.ndarray, p: np.ndarray) -> list[Found]:
    """Every signal of one monitor over labeled batches, as replay feeds them."""
    monitor = build(kind, params)
    idx = np.flatnonzero(p >= 0)
    out: list[Found] = []
    for i in range(0, len(idx), BATCH):
        rows = idx[i : i + BATCH]
        batch = Batch.of(index=rows, prediction=p[rows].astype(float), label=y[rows].astype(float))
        out += [(s.at, s.drift, s.details.get("direction")) for s in monitor.update(batch)]
    return out


def directions(y: np.ndarray, p: np.ndarray, truths: list[tuple[int, int]]) -> list[str]:
    """``up`` or ``down`` per change: the mean error just after it against just before it."""
    err = np.where(p >= 0, (p != y).astype(float), np.nan)
    out = []
    for start, end in truths:
        before = np.nanmean(err[max(0, start - BEFORE) : start])
        after = np.nanmean(err[end : end + AFTER])
        out.append("up" if after > before else "down")
    return out


def found(sigs: list[Found], truths: list[tuple[int, int]], ways: list[str], max_delay: int = MAX_DELAY) -> float:
    """Share of changes with a signal in their window going the way the error went.

    >>> found([(1010, True, "up"), (2020, False, "down"), (3030, True, None)],
    ...       [(1000, 1000), (2000, 2000), (3000, 3000), (4000, 4000)], ["up", "up", "down", "up"], 100)
    0.5
    """
    hits = 0
    for (start, end), way in zip(truths, ways, strict=True):
        hits += any(start <= at <= end + max_delay and d in (None, way) for at, _, d in sigs)
    return hits / max(1, len(truths))


def task(job: tuple[str, str, str, dict[str, Any], int]) -> tuple[str, str, str, Score, float]:
    generator, mode, row, params, seed = job
    kind, extra = VARIANTS.get(row, (row, {}))
    y, p, truths = stream(generator, mode, seed)
    t0 = time.perf_counter()
    sigs = signals(kind, {**params, **extra}, y, p)
    secs = time.perf_counter() - t0
    score = evaluate([at for at, drift, _ in sigs if drift], truths, len(y))
    score = replace(score, found=found(sigs, truths, directions(y, p, truths)))
    return generator, mode, row, score, secs


def fmt(v: float | None, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--seed", type=int, default=1, help="generator seed (the paper runs one stream per generator)")
    args = ap.parse_args()
    kinds = args.kinds.split(",")
    started = time.perf_counter()
    with Pool(args.workers) as pool:
        pool.starmap(paper_streams.cached, [(g, WIDTH[m], args.seed) for g, m in STREAMS])  # build the cache once
        jobs = [(g, m, k, {"series": "error"}, args.seed) for g, m in STREAMS for k in kinds]
        rows = pool.map(task, jobs, chunksize=1)
    import river

    print(
        f"Paper protocol (Cerqueira et al. 2026): River {river.__version__} generators, Hoeffding tree "
        f"test-then-train, 30 drifts, max delay {MAX_DELAY}; generator seed {args.seed}\n"
    )
    print("| stream | kind | F1 | paper best F1 | detected | found | mean delay | FA/1000 | alarms | s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for g, m in STREAMS:
        best_name, best = PAPER_BEST[(g, m)]
        for gg, mm, kind, s, secs in rows:
            if (gg, mm) != (g, m):
                continue
            mark = " **" if s.f1 > best else ""
            print(
                f"| {g} {m} | {kind} | {s.f1:.3f}{mark} | {best:.3f} ({best_name}) | {s.detected:.0%} | "
                f"{fmt(s.found, '.0%')} | "
                f"{fmt(s.delay, '.0f')} | {s.far:.3f} | {s.alarms} | {secs:.1f} |"
            )
    print(f"\n(** beats the paper's best; {time.perf_counter() - started:.0f} s on {args.workers} workers)")


if __name__ == "__main__":
    main()
