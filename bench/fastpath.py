"""Two-sample drift per window: driftwarden's numpy/scipy fast path vs Evidently.

One window is 1,000 current rows x 20 features against a prepared reference. For each method
(and ``auto``) the table shows the time per window of the fast path (``driftwarden.detectors.stats``,
reference prepared once, not counted) and of Evidently (one Report with a ValueDrift per
feature, as ``driftwarden.detectors.evidently_adapter`` runs it), the speedup, and the largest absolute
difference between the two drift scores over every feature of every timed window.

    .venv/bin/python bench/fastpath.py [--evidently-windows 3] [--fast-windows 30]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from driftwarden.detectors.evidently_adapter import evidently_column_drift
from driftwarden.detectors.stats import Reference, TestResult, two_sample

WINDOW_ROWS = 1_000
FEATURES = 20
CATEGORIES = np.array(list("abcdefgh"), dtype=object)


@dataclass(frozen=True)
class Case:
    label: str  # what the data is
    method: str
    reference_rows: int
    kinds: tuple[str, ...]  # "num" or "cat" per feature


def _column(rng: np.random.Generator, kind: str, rows: int, shift: float) -> np.ndarray:
    if kind == "num":
        x = rng.normal(shift, 1.0 + shift, size=rows)
        x[rng.random(rows) < 0.02] = np.nan  # a little missing data
        return x
    p = np.linspace(1.0, 1.0 + 4 * shift, CATEGORIES.size)
    out = CATEGORIES[rng.choice(CATEGORIES.size, size=rows, p=p / p.sum())]
    out[rng.random(rows) < 0.02] = None
    return out


def _frame(rng: np.random.Generator, kinds: tuple[str, ...], rows: int, drifted: bool) -> pd.DataFrame:
    # in a drifted window, every other feature moves a little more than the one before
    return pd.DataFrame(
        {f"f{i:02d}": _column(rng, kind, rows, 0.02 * i if drifted and i % 2 else 0.0) for i, kind in enumerate(kinds)}
    )


def _score_diff(ours: TestResult, theirs_score: float) -> float:
    a, b = ours.score, theirs_score
    if a == b or (np.isnan(a) and np.isnan(b)):
        return 0.0
    return abs(a - b)


def _timed(fn: Callable[[], object], repeat: int) -> tuple[float, list[object]]:
    out = []
    start = time.perf_counter()
    for _ in range(repeat):
        out.append(fn())
    return (time.perf_counter() - start) / repeat, out


def run_case(case: Case, evidently_windows: int, fast_windows: int, seed: int = 0) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    ref = _frame(rng, case.kinds, case.reference_rows, drifted=False)
    windows = [_frame(rng, case.kinds, WINDOW_ROWS, drifted=bool(w % 2)) for w in range(evidently_windows)]
    categorical = [c for c, k in zip(ref.columns, case.kinds, strict=True) if k == "cat"]
    prepared = {c: Reference(ref[c].to_numpy(), categorical=c in categorical) for c in ref.columns}
    arrays = [{c: w[c].to_numpy() for c in w.columns} for w in windows]

    def fast(i: int) -> dict[str, TestResult]:
        cur = arrays[i % len(arrays)]
        return {c: two_sample(case.method, prepared[c], cur[c]) for c in prepared}

    counter = iter(range(10**9))
    fast_s, fast_out = _timed(lambda: fast(next(counter)), fast_windows)
    methods = dict.fromkeys(ref.columns, case.method)
    counter = iter(range(10**9))
    ev_s, ev_out = _timed(
        lambda: evidently_column_drift(ref, windows[next(counter)], methods, categorical=categorical),
        evidently_windows,
    )
    diff, resolved, drifted = 0.0, set(), 0
    for i, theirs in enumerate(ev_out):
        ours = fast_out[i]
        for c in ref.columns:
            diff = max(diff, _score_diff(ours[c], theirs[c].score))  # type: ignore[index]
            resolved.add(ours[c].method)  # type: ignore[index]
            drifted += ours[c].drift  # type: ignore[index]
            assert ours[c].method == theirs[c].method, (c, ours[c], theirs[c])  # type: ignore[index]
            assert ours[c].drift == theirs[c].drift, (c, ours[c], theirs[c])  # type: ignore[index]
    return {
        "case": case,
        "fast_ms": fast_s * 1e3,
        "evidently_ms": ev_s * 1e3,
        "speedup": ev_s / fast_s,
        "max_diff": diff,
        "resolved": ",".join(sorted(resolved)),
        "drifted": f"{drifted}/{len(ev_out) * len(ref.columns)}",
    }


def cases() -> list[Case]:
    num, cat = ("num",) * FEATURES, ("cat",) * FEATURES
    mixed = ("num", "cat") * (FEATURES // 2)
    return [
        Case("20 numeric", "ks", 1_000, num),
        *(Case("20 numeric", m, 5_000, num) for m in ("ks", "psi", "wasserstein", "jensenshannon")),
        *(Case("20 categorical", m, 5_000, cat) for m in ("psi", "jensenshannon", "chisquare", "z")),
        Case("10 num + 10 cat", "auto", 1_000, mixed),
        Case("10 num + 10 cat", "auto", 5_000, mixed),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evidently-windows", type=int, default=3, help="windows timed for Evidently")
    parser.add_argument("--fast-windows", type=int, default=30, help="windows timed for the fast path")
    args = parser.parse_args()
    rows = [run_case(c, args.evidently_windows, max(args.fast_windows, args.evidently_windows)) for c in cases()]

    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Drift per window: {WINDOW_ROWS:,} rows x {FEATURES} features "
        f"(fast path: mean of {args.fast_windows} windows, Evidently: {args.evidently_windows})"
    )
    for name in (
        "method",
        "data",
        "ref rows",
        "ran",
        "drifted",
        "fast ms",
        "Evidently ms",
        "speedup",
        "max |Δ score|",
    ):
        table.add_column(name, justify="left" if name in ("method", "data", "ran") else "right")
    for r in rows:
        case: Case = r["case"]  # type: ignore[assignment]
        table.add_row(
            case.method,
            case.label,
            f"{case.reference_rows:,}",
            str(r["resolved"]),
            str(r["drifted"]),
            f"{r['fast_ms']:.2f}",
            f"{r['evidently_ms']:.0f}",
            f"{r['speedup']:.0f}x",
            f"{r['max_diff']:.1e}",
        )
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
