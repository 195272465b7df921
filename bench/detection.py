"""Detection quality of the monitors: detection rate, delay and false alarms, with River's own
detectors run raw on the same streams as the baseline, plus feature_drift's false-alarm and
power check over 20 features.

    .venv/bin/python bench/detection.py [--seeds 10] [--workers 2] [--quick] [--part calibration|streams]
        [--kinds cusum,ewma]

First the calibrated-defaults table (bench/calibration.py): every streaming kind at its defaults
on stationary twins (an N(0,1) feature; 0/1 errors at 5 % and 30 %), false alarms per 100,000
events, and whether a 1-sd shift or a doubled error rate is found within 1,000 events. Then:

Streams (each with a no-drift twin drawn from the same generator without the change):

- ``mean+0.5sd``, ``mean+1sd``: N(0, 1) whose mean jumps at event 5,000 (12,000 events);
- ``gradual``: the mean moves linearly from 0 to 1 sd over events 5,000-10,000;
- ``variance``: the sd doubles at event 5,000;
- ``categorical``: categories a-d with shares .4/.3/.2/.1 becoming equal at 5,000; the
  streaming detectors watch the 0/1 indicator of ``a``, feature_drift the column itself;
- ``sea``, ``agrawal``, ``stagger``, ``hyperplane``: the 0/1 error stream of a prequential model
  (test, then train, on every event) over River's generators, with the concept switching at event
  5,000 of 10,000 through ``ConceptDriftStream(width=100)`` (River 0.26.1 overflows for widths
  below ~57). SEA variant 0 → 2, Agrawal function 0 → 2, STAGGER function 0 → 2, Hyperplane
  → a hyperplane of another seed; the twins never switch (Hyperplane with ``mag_change=0``).
  The model is trained on 3,000 events first (not measured). It is River's Hoeffding tree on
  Agrawal (a tree concept) and a standardised logistic regression on the others (linear
  concepts): the Hoeffding tree's own restructuring makes the error of a stationary Hyperplane
  stream jump, which is the model's doing, not drift.

Metrics per detector and stream over the seeds: ``detected`` — share of seeds with an alarm in
the detection window (from the change, or for the concept streams from half the transition
width before River's drift position, to 1,000 events after; the gradual stream to the end of
its ramp + 1,000); ``mean``/``median`` delay of the first alarm in that window (events after
the change; concept streams can be slightly negative: their change is a 100-event transition
centred on the position); ``FA/100k`` — alarms before the change plus all alarms on the twin,
per 100,000 events of both. KSWIN costs ~0.35 ms per event, so it runs on the first 3 seeds
and 2,000 events either side of the change only (twin: 4,000 events).

``driftwarden`` rows use the monitor kinds with their defaults through the Monitor API;
``river`` rows run River's classes directly with River's defaults. ``--kinds`` (as the calibration
part's) keeps the rows of those kinds, each with River's detector of the same name.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import Pool
from typing import Any

import numpy as np
from river import drift as rdrift
from river import linear_model, preprocessing, tree
from river.datasets import synth
from river.drift import binary as rbinary
from scipy.stats import false_discovery_control

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import calibration  # noqa: E402
from driftwarden.detectors.base import Batch  # noqa: E402
from driftwarden.detectors.drift import FeatureDrift  # noqa: E402
from driftwarden.detectors.registry import build  # noqa: E402

FEATURE_EVENTS = 12_000
CHANGE = 5_000
RAMP = 5_000
HORIZON = 1_000
ERROR_EVENTS = 10_000
WARM = 3_000
WIDTH = 100
KSWIN_SEEDS = 3
KSWIN_SPAN = 2_000
CATEGORIES = np.array(list("abcd"), dtype=object)

FEATURE_STREAMS = ("mean+0.5sd", "mean+1sd", "gradual", "variance", "categorical")
ERROR_STREAMS = ("sea", "agrawal", "stagger", "hyperplane")


# ----------------------------------------------------------------------------- streams


def feature_stream(name: str, seed: int, drifted: bool) -> np.ndarray:
    rng = np.random.default_rng([seed, FEATURE_STREAMS.index(name), int(drifted)])
    n = FEATURE_EVENTS
    t = np.arange(n)
    after = (t >= CHANGE) if drifted else np.zeros(n, bool)
    if name == "categorical":
        before_p, after_p = np.array([0.4, 0.3, 0.2, 0.1]), np.full(4, 0.25)
        u = rng.random(n)
        cum = np.where(after[:, None], np.cumsum(after_p), np.cumsum(before_p))
        return CATEGORIES[(u[:, None] > cum).sum(axis=1)]
    z = rng.normal(0, 1, n)
    if not drifted:
        return z
    if name == "mean+0.5sd":
        return z + 0.5 * after
    if name == "mean+1sd":
        return z + 1.0 * after
    if name == "gradual":
        return z + np.clip((t - CHANGE) / RAMP, 0, 1)
    if name == "variance":
        return z * np.where(after, 2.0, 1.0)
    raise ValueError(name)


def _generators(name: str, seed: int) -> tuple[Any, Any, Callable[[], Any]]:
    if name == "sea":
        a, b = synth.SEA(variant=0, seed=seed), synth.SEA(variant=2, seed=seed + 1000)
    elif name == "agrawal":
        a = synth.Agrawal(classification_function=0, seed=seed)
        b = synth.Agrawal(classification_function=2, seed=seed + 1000)
    elif name == "stagger":
        a = synth.STAGGER(classification_function=0, seed=seed)
        b = synth.STAGGER(classification_function=2, seed=seed + 1000)
    elif name == "hyperplane":
        a, b = (
            synth.Hyperplane(seed=seed, mag_change=0.0),
            synth.Hyperplane(seed=seed + 1000, mag_change=0.0),
        )
    else:
        raise ValueError(name)

    def model() -> Any:
        if name == "agrawal":
            return tree.HoeffdingTreeClassifier()
        return preprocessing.StandardScaler() | linear_model.LogisticRegression()

    return a, b, model


def error_stream(name: str, seed: int, drifted: bool) -> np.ndarray:
    a, b, make = _generators(name, seed)
    source = synth.ConceptDriftStream(a, b, position=WARM + CHANGE, width=WIDTH, seed=seed) if drifted else a
    model = make()
    out = np.empty(WARM + ERROR_EVENTS)
    for i, (x, y) in enumerate(itertools.islice(source, WARM + ERROR_EVENTS)):
        out[i] = model.predict_one(x) != y
        model.learn_one(x, y)
    return out[WARM:]


# ----------------------------------------------------------------------------- detectors


@dataclass(frozen=True)
class Detector:
    name: str
    source: str  # "driftwarden" or "river"
    run: Callable[[np.ndarray], list[int]]
    on: tuple[str, ...]  # "feature", "error"
    sampled: bool = False


def ours(kind: str, **params: Any) -> Callable[[np.ndarray], list[int]]:
    def run(x: np.ndarray) -> list[int]:
        m = build(kind, {"series": "x", **params})
        return [s.at for s in m.update(Batch.of(index=range(len(x)), features={"x": x}))]

    return run


def raw(make: Callable[[], Any]) -> Callable[[np.ndarray], list[int]]:
    def run(x: np.ndarray) -> list[int]:
        d = make()
        out = []
        for i, v in enumerate(x.tolist()):
            d.update(v)
            if d.drift_detected:
                out.append(i)
        return out

    return run


def windowed(x: np.ndarray) -> list[int]:
    m = FeatureDrift(window_events=500)
    return [s.at for s in m.update(Batch.of(index=range(len(x)), features={"x": x})) if s.drift]


BOTH = ("feature", "error")
DETECTORS = (
    Detector("adwin", "driftwarden", ours("adwin"), BOTH),
    Detector("page_hinkley", "driftwarden", ours("page_hinkley"), BOTH),
    Detector("kswin", "driftwarden", ours("kswin"), ("feature",), sampled=True),
    Detector("cusum", "driftwarden", ours("cusum"), BOTH),
    Detector("ewma", "driftwarden", ours("ewma"), BOTH),
    Detector("ddm", "driftwarden", ours("ddm"), ("error",)),
    Detector("eddm", "driftwarden", ours("eddm"), ("error",)),
    Detector("hddm_a", "driftwarden", ours("hddm_a"), ("error",)),
    Detector("hddm_w", "driftwarden", ours("hddm_w"), ("error",)),
    Detector("concept_drift", "driftwarden", ours("concept_drift", direction="up"), ("error",)),
    Detector("feature_drift/500", "driftwarden", windowed, ("feature",)),
    Detector("ADWIN", "river", raw(rdrift.ADWIN), BOTH),
    Detector("PageHinkley", "river", raw(rdrift.PageHinkley), BOTH),
    Detector("KSWIN", "river", raw(lambda: rdrift.KSWIN(seed=42)), ("feature",), sampled=True),
    Detector("DDM", "river", raw(rbinary.DDM), ("error",)),
    Detector("EDDM", "river", raw(rbinary.EDDM), ("error",)),
    Detector("HDDM_A", "river", raw(rbinary.HDDMA), ("error",)),
    Detector("HDDM_W", "river", raw(rbinary.HDDMW), ("error",)),
)


def selected(kinds: list[str]) -> tuple[Detector, ...]:
    """The rows of ``kinds`` (``--kinds``), each with River's detector of the same name as its baseline.

    >>> [(d.name, d.source) for d in selected(["cusum", "adwin"])]
    [('adwin', 'driftwarden'), ('cusum', 'driftwarden'), ('ADWIN', 'river')]
    """
    wanted = {k.replace("_", "").lower() for k in kinds}
    return tuple(d for d in DETECTORS if d.name.split("/")[0].replace("_", "").lower() in wanted)


# ----------------------------------------------------------------------------- measuring


@dataclass
class Outcome:
    delay: int | None  # first alarm in the detection window, events after the change
    false_alarms: int
    events: int  # events over which false alarms were counted


def outcome(
    alarms_drift: list[int],
    alarms_twin: list[int],
    n_twin: int,
    change: int,
    early: int,
    horizon: int,
) -> Outcome:
    hits = [a - change for a in alarms_drift if change - early <= a <= change + horizon]
    before = [a for a in alarms_drift if a < change - early]
    return Outcome(hits[0] if hits else None, len(before) + len(alarms_twin), change - early + n_twin)


def task(args: tuple[str, str, int, bool]) -> list[tuple[str, str, str, Outcome]]:
    family, stream, seed, quick = args
    if family == "feature":
        drifted, twin = feature_stream(stream, seed, True), feature_stream(stream, seed, False)
        early, horizon = 0, (RAMP + HORIZON if stream == "gradual" else HORIZON)
    else:
        drifted, twin = error_stream(stream, seed, True), error_stream(stream, seed, False)
        early, horizon = WIDTH // 2, HORIZON
    results = []
    for d in DETECTORS:
        if family not in d.on:
            continue
        if d.sampled and seed >= KSWIN_SEEDS:
            continue
        x, y, change = drifted, twin, CHANGE
        if stream == "categorical" and d.name != "feature_drift/500":
            x, y = (x == "a").astype(float), (y == "a").astype(float)
        if d.sampled:
            x, y, change = (
                x[CHANGE - KSWIN_SPAN : CHANGE + KSWIN_SPAN],
                y[: 2 * KSWIN_SPAN],
                KSWIN_SPAN,
            )
        if quick and d.sampled:
            continue
        results.append((stream, d.name, d.source, outcome(d.run(x), d.run(y), len(y), change, early, horizon)))
    return results


def summarise(rows: list[tuple[str, str, str, Outcome]]) -> list[dict[str, Any]]:
    table: dict[tuple[str, str, str], list[Outcome]] = {}
    for stream, name, source, o in rows:
        table.setdefault((stream, name, source), []).append(o)
    order = {s: i for i, s in enumerate(FEATURE_STREAMS + ERROR_STREAMS)}
    det_order = {d.name: i for i, d in enumerate(DETECTORS)}
    out = []
    for (stream, name, source), outs in sorted(table.items(), key=lambda kv: (order[kv[0][0]], det_order[kv[0][1]])):
        delays = [o.delay for o in outs if o.delay is not None]
        fa = sum(o.false_alarms for o in outs)
        ev = sum(o.events for o in outs)
        out.append(
            {
                "stream": stream,
                "detector": name,
                "source": source,
                "seeds": len(outs),
                "detected": len(delays) / len(outs),
                "mean": float(np.mean(delays)) if delays else None,
                "median": float(np.median(delays)) if delays else None,
                "fa_per_100k": fa / ev * 1e5,
            }
        )
    return out


def fmt(v: float | None, digits: int = 0) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    print("| stream | detector | source | seeds | detected | mean delay | median delay | FA/100k |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['stream']} | {r['detector']} | {r['source']} | {r['seeds']} | "
            f"{r['detected']:.0%} | "
            f"{fmt(r['mean'])} | {fmt(r['median'])} | {fmt(r['fa_per_100k'], 1)} |"
        )


# ----------------------------------------------------------------------------- feature_drift x 20


FD_FEATURES = 20
FD_WINDOW = 500


def feature_drift_task(args: tuple[int, float, int]) -> list[np.ndarray]:
    """Per-feature p-values of each window (KS through ``auto``), reference = the first window."""
    seed, shift, windows = args
    rng = np.random.default_rng([seed, int(shift * 100)])
    ref = rng.normal(0, 1, (FD_WINDOW, FD_FEATURES))
    cur = rng.normal(shift, 1, (FD_WINDOW * windows, FD_FEATURES))
    x = np.vstack([ref, cur])
    m = FeatureDrift(window_events=FD_WINDOW, correction="none")
    signals = m.update(Batch.of(index=range(len(x)), features={f"f{i:02d}": x[:, i] for i in range(FD_FEATURES)}))
    return [np.array([f["p_value"] for f in s.details["features"].values()]) for s in signals]


def drifted_features(p: np.ndarray, correction: str, alpha: float = 0.05) -> int:
    """As FeatureDrift decides: KS ``p <= alpha`` uncorrected, else corrected ``q < alpha``."""
    if correction == "none":
        return int((p <= alpha).sum())
    q = np.minimum(1.0, p * len(p)) if correction == "bonferroni" else false_discovery_control(p, method="bh")
    return int((q < alpha).sum())


def feature_drift_check(pool: Pool, seeds: int, windows: int) -> None:
    shifts = (0.0, 0.25)
    jobs = [(s, shift, windows) for shift in shifts for s in range(seeds)]
    results = dict(zip(jobs, pool.map(feature_drift_task, jobs), strict=True))
    print(
        f"\nfeature_drift: {FD_FEATURES} N(0,1) features, windows of {FD_WINDOW} events "
        "vs the first window, "
        f"method auto (KS), {seeds} seeds x {windows} windows per condition\n"
    )
    print(
        "| correction | no drift: windows with drift (share >= 0.5) "
        "| no drift: windows with any feature flagged "
        "| 0.25 sd on all: windows with drift | 0.25 sd: any flagged "
        "| 0.25 sd: mean features flagged |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for correction in ("none", "bonferroni", "bh"):
        cells = []
        for shift in shifts:
            counts = np.array(
                [drifted_features(p, correction) for s in range(seeds) for p in results[(s, shift, windows)]]
            )
            cells.append((np.mean(counts >= FD_FEATURES / 2), np.mean(counts >= 1), counts.mean()))
        (n_drift, n_any, _), (s_drift, s_any, s_mean) = cells
        default = " (default)" if correction == "bh" else ""
        print(f"| {correction}{default} | {n_drift:.1%} | {n_any:.1%} | {s_drift:.1%} | {s_any:.1%} | {s_mean:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--fd-windows", type=int, default=50, help="windows per seed in the 20-feature check")
    ap.add_argument("--quick", action="store_true", help="skip KSWIN and use 3 seeds (a smoke run)")
    ap.add_argument("--part", choices=("all", "calibration", "streams"), default="all")
    calibration.add_arguments(ap)
    args = ap.parse_args()
    seeds = 3 if args.quick else args.seeds
    started = time.perf_counter()
    chosen = args.kinds != ",".join(calibration.ALL_KINDS)  # --kinds given: only those rows (workers fork after)
    if chosen:
        global DETECTORS
        DETECTORS = selected(args.kinds.split(","))
    jobs = [("error", s, seed, args.quick) for s in ERROR_STREAMS for seed in range(seeds)]
    jobs += [("feature", s, seed, args.quick) for s in FEATURE_STREAMS for seed in range(seeds)]
    with Pool(args.workers) as pool:
        if args.part != "streams":
            calibration.report(pool, args)
            print()
        if args.part == "calibration":
            print(f"({time.perf_counter() - started:.0f} s on {args.workers} workers)")
            return
        rows = [r for part in pool.map(task, jobs, chunksize=1) for r in part]
        print(
            f"Detection: {seeds} seeds per stream (KSWIN: {min(seeds, KSWIN_SEEDS)}, sampled), "
            f"River {__import__('river').__version__}\n"
        )
        print_table(summarise(rows))
        if not chosen or any(d.name.startswith("feature_drift") for d in DETECTORS):
            feature_drift_check(pool, seeds, args.fd_windows)
    print(f"\n({time.perf_counter() - started:.0f} s on {args.workers} workers)")


if __name__ == "__main__":
    main()
