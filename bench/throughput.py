"""Throughput and memory of the data path, against bare orjson decoding of the same file.

    python bench/throughput.py [--predictions 100000] [--models 100:400000,1000:1000000] [--json]

Prints the tables (``--json``: all of them as one JSON object on one line). Rates are marginal
(after start-up: from the end of the first batch to the end)
and per core (CPU seconds of the process; wall seconds in their own column); each single-model
path runs ``--repeat`` times, interleaved, each in a fresh process pinned to one core, and the
median run is reported with the spread. The stream has 16
features (12 numeric, 4 categorical) and labels as separate events 50 predictions later; the
policy is the default monitor set: ``feature_drift`` on all features with windows of 2,000 events,
``adwin`` on ``error``, ``performance`` with windows of 2,000. The many-models rows run one fleet
policy (``models: "m*"``) over 20 features, in a fresh process each: 100 models with 400,000
predictions (every model fills its reference and a current window), 1,000 models with a million
predictions (1,000 each), both with their labels; their restart is a fresh process opening the
state the run left (loading the policy and every model's state; the imports before the clock). Each
fleet row also gives the floor of the design on its stream (:func:`floor_rate`: the least work per
record, in Python, in a fresh process) and the daemon's share of it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from operator import itemgetter
from pathlib import Path
from typing import TypeVar

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
sys.path.insert(0, str(ROOT))

POLICY = """version: 1
model: {model}
monitors:
  inputs: {{kind: feature_drift, features: all, window: {{events: 2000}}}}
  errors: {{kind: adwin, series: error}}
  perf: {{kind: performance, metric: accuracy, window: {{events: 2000}}}}
rules:
  - {{name: drift, when: "inputs.drift || errors.drift", cooldown: 1h, do: alert}}
"""


def write_stream(path: Path, predictions: int, models: int = 1, features: int = 16, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    n_num = features * 3 // 4
    written = 0
    pending: deque[tuple[str, str, int]] = deque()
    with path.open("wb") as out:
        for i in range(predictions):
            model = f"m{i % models}"
            num = rng.normal(size=n_num).round(4).tolist()
            feats: dict[str, object] = {f"x{j}": num[j] for j in range(n_num)}
            feats.update({f"c{j}": f"v{k}" for j, k in enumerate(rng.integers(0, 5, size=features - n_num).tolist())})
            y = int(num[0] > 0)
            p = y if rng.random() < 0.9 else 1 - y
            out.write(
                orjson.dumps(
                    {
                        "model": model,
                        "id": f"e{i}",
                        "ts": 1.7e9 + i,
                        "features": feats,
                        "prediction": p,
                        "score": round(float(rng.random()), 4),
                    }
                )
                + b"\n"
            )
            pending.append((model, f"e{i}", y))
            written += 1
            if len(pending) > 50:
                m, ident, label = pending.popleft()
                out.write(orjson.dumps({"model": m, "id": ident, "ts": 1.7e9 + i, "label": label}) + b"\n")
                written += 1
    return written


def bare_orjson(path: Path) -> tuple[float, float]:
    """Records/s of reading the file and orjson-decoding each line: (per CPU second, per wall second)."""
    c0, w0 = time.process_time(), time.perf_counter()
    n = 0
    with path.open("rb") as f:
        for line in f:
            orjson.loads(line)
            n += 1
    return n / (time.process_time() - c0), n / (time.perf_counter() - w0)


SCRAPE_SECONDS = 1.0
"""The HTTP row's scrape interval: a Prometheus scraping every second (5-15 x more often than usual)."""


def daemon_rate(
    path: Path, policies: list[Path], state: Path, *, replay: bool, batch_size: int = 1000, http: bool = False
) -> dict:
    """Run the daemon loop over the file; marginal rates after the first batch, stage times. ``http``: with
    the HTTP face on and ``/metrics`` (and ``/api/v1/status``) fetched every :data:`SCRAPE_SECONDS` by a
    thread of this process, so its CPU time counts."""
    from driftwarden.daemon.cli.output import JsonLines
    from driftwarden.daemon.config import Settings
    from driftwarden.daemon.io.sources import FileSource
    from driftwarden.daemon.runtime import Daemon
    from driftwarden.policies.loader import load_policy

    sink = JsonLines(open(os.devnull, "w")) if replay else None  # noqa: SIM115 - closed with the process
    settings = Settings(state_dir=state, batch_size=batch_size, execute=False)
    daemon = Daemon(settings, FileSource(path), [load_policy(p) for p in policies], listener=sink)
    scraper = _Scraper(daemon) if http else None
    daemon.run(count=batch_size)
    c0, w0, r0 = time.process_time(), time.perf_counter(), daemon.stats.records
    stats = daemon.run()
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    n = stats.records - r0
    scrapes = scraper.stop() if scraper is not None else 0
    stages = dict(stats.timings)
    for pipe in daemon.pipelines.values():
        for k, v in pipe.timings.items():
            stages[k] = stages.get(k, 0.0) + v
    stages["monitors"] = stages.pop("monitors") - sum(stages.get(k, 0.0) for k in ("join", "columns", "monitors+rules"))
    daemon.close()
    return {
        "cpu_rate": n / cpu,
        "wall_rate": n / wall,
        "records": stats.records,
        "stages": stages,
        "per_record_us": {k: 1e6 * v / stats.records for k, v in stages.items()},
        "scrapes": scrapes,
    }


class _Scraper:
    """The daemon's HTTP face, and a thread that scrapes it every :data:`SCRAPE_SECONDS` (a bounded loop)."""

    def __init__(self, daemon: object) -> None:
        import threading

        import httpx
        from driftwarden.daemon.http.face import serve

        self.server = serve(daemon, "127.0.0.1:0")
        self.done = threading.Event()
        self.count = 0

        def scrape() -> None:
            with httpx.Client(base_url=self.server.url, timeout=10) as client:
                while not self.done.wait(SCRAPE_SECONDS):
                    assert client.get("/metrics").status_code == 200
                    client.get("/api/v1/status")
                    self.count += 1

        self.thread = threading.Thread(target=scrape, daemon=True)
        self.thread.start()

    def stop(self) -> int:
        self.done.set()
        self.thread.join(30)
        self.server.stop()
        return self.count


def peak_rss_mb() -> float:
    """Peak RSS of this process. On Linux ``ru_maxrss`` survives ``exec`` (a child reports its parent's
    peak if that was higher), so read the address space's own high-water mark, ``VmHWM``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median(runs: list[T], key: Callable[[T], float]) -> T:
    """The run with the median ``key`` (the upper one of an even count)."""
    return sorted(runs, key=key)[len(runs) // 2]


def spread(rates: list[float]) -> str:
    return f"{min(rates):,.0f} – {max(rates):,.0f}"


def current_rss_mb() -> float:
    """RSS of this process now (``VmRSS``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fresh_daemon_rate(path: Path, policies: list[Path], state: Path, *, replay: bool, http: bool = False) -> dict:
    """:func:`daemon_rate` in a fresh process, as a deployment runs one daemon: sequential daemons in
    one process leave each other a bigger heap (and, after ``gc.freeze``, garbage no pass frees)."""
    code = (
        f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); from pathlib import Path; "
        f"from bench.throughput import daemon_rate; "
        f"print(json.dumps(daemon_rate(Path({str(path)!r}), [Path(p) for p in {[str(p) for p in policies]!r}], "
        f"Path({str(state)!r}), replay={replay!r}, http={http!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


FLEET_POLICY = POLICY.format(model="MODEL").replace("model: MODEL", "models: 'm*'")


def memory_run(tmp: Path, models: int, predictions: int) -> dict:
    """Rate and peak RSS with ``models`` models × 20 features under one fleet policy, in a fresh
    process; then the restart (a daemon opening that state, its pipelines restored) in another
    fresh process, as a restart is."""
    run = f"""
import sys, json
sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
from bench.throughput import current_rss_mb, daemon_rate, peak_rss_mb
import driftwarden.daemon.runtime, driftwarden.daemon.io.sources, driftwarden.policies.loader  # the imports
tmp = Path({str(tmp)!r})
start = current_rss_mb()
r = daemon_rate(tmp / 'many-{models}.jsonl', [tmp / 'fleet.yaml'], tmp / 'state-many-{models}', replay=False)
print(json.dumps({{"records": r["records"], "rss_mb": peak_rss_mb(), "start_mb": start, "rate": r["cpu_rate"],
                  "wall_rate": r["wall_rate"]}}))
"""
    restart = f"""
import sys, time, json
sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
from driftwarden.daemon.config import Settings
from driftwarden.daemon.runtime import Daemon
from driftwarden.daemon.io.sources import FileSource
from driftwarden.policies.loader import load_policy
tmp = Path({str(tmp)!r})
t0 = time.perf_counter()
policies = [load_policy(tmp / 'fleet.yaml')]
d = Daemon(Settings(state_dir=tmp / 'state-many-{models}', execute=False), FileSource(tmp / 'many-{models}.jsonl'),
           policies)
print(json.dumps({{"restart_s": time.perf_counter() - t0, "pipelines": len(d.pipelines)}}))
"""
    (tmp / "fleet.yaml").write_text(FLEET_POLICY)
    write_stream(tmp / f"many-{models}.jsonl", predictions, models=models, features=20)
    out = {"models": models, "predictions": predictions}
    for code in (run, restart):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        out.update(json.loads(done.stdout.strip().splitlines()[-1]))
    out["state_mb"] = (tmp / f"state-many-{models}" / "state.db").stat().st_size / 1e6
    out["floor_rate"] = fresh_floor_rate(tmp / f"many-{models}.jsonl")
    return out


FLOOR_CHUNKS = (20_000, 200_000)
"""Records the floor groups by model at once: the daemon's checkpoint interval, and the most events it
holds for their models (daemon/runtime.py's HELD_IN_MEMORY); the faster of the two is the floor."""


def floor_rate(path: Path, chunk: int) -> float:
    """Records/s per CPU second of the least this data path must do per record, in this process's
    Python: orjson per record, the records grouped by model (``chunk`` at a time), each
    label joined to its prediction by id, the feature columns as numpy arrays appended to a window,
    and each 0/1 error fed to River's ADWIN core. Nothing else the daemon does: no validation or
    dead letters, no state or checkpoints, no tests at a window's end, no accuracy, rules or
    retraining buffer. No implementation of this design in Python goes faster on the machine; the
    fleet rows are read against it.

    >>> import tempfile; f = Path(tempfile.mkdtemp()) / "s.jsonl"; _ = write_stream(f, 200, models=3)
    >>> floor_rate(f, 100) > 0
    True
    """
    from river._river_rust.drift import AdaptiveWindowing  # the core River's ADWIN calls per value

    lines = path.read_bytes().splitlines()
    waiting: dict[str, dict[str, object]] = {}
    detectors: dict[str, AdaptiveWindowing] = {}
    windows: dict[str, dict[str, list[np.ndarray]]] = {}
    started = time.process_time()
    for start in range(0, len(lines), chunk):
        by_model: dict[str, list[dict]] = {}
        for obj in map(orjson.loads, lines[start : start + chunk]):
            by_model.setdefault(obj["model"], []).append(obj)
        for model, rows in by_model.items():
            predictions = [r for r in rows if "features" in r]
            pending = waiting.setdefault(model, {})
            pending.update((r["id"], r["prediction"]) for r in predictions)
            errors = [float(pending.pop(r["id"]) != r["label"]) for r in rows if "label" in r and r["id"] in pending]
            if predictions:
                features = [r["features"] for r in predictions]
                window = windows.setdefault(model, {name: [] for name in features[0]})
                for name, column in window.items():
                    values = list(map(itemgetter(name), features))
                    numeric = type(values[0]) is float
                    column.append(np.fromiter(values, np.float64, len(values)) if numeric else np.array(values, object))
            adwin = detectors.get(model) or detectors.setdefault(model, AdaptiveWindowing(0.05, 32, 5, 5, 10))
            for e in errors:
                adwin.update(e)
    return len(lines) / (time.process_time() - started)


def fresh_floor_rate(path: Path) -> float:
    """The faster :func:`floor_rate` of :data:`FLOOR_CHUNKS`, each in a fresh process (as the daemon rows run)."""
    rates = []
    for chunk in FLOOR_CHUNKS:
        code = (
            f"import sys; sys.path.insert(0, {str(ROOT)!r}); from pathlib import Path; "
            f"from bench.throughput import floor_rate; print(floor_rate(Path({str(path)!r}), {chunk}))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        rates.append(float(out.stdout.strip().splitlines()[-1]))
    return max(rates)


def startup_seconds(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "driftwarden.daemon.cli", *args], capture_output=True, check=True, cwd=ROOT)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--predictions", type=int, default=100_000)
    ap.add_argument(
        "--models",
        default="100:400000,1000:1000000",
        help="many-models rows, MODELS:PREDICTIONS comma-separated (default: 100 models × 400,000 predictions, "
        "1,000 models × 1,000,000)",
    )
    ap.add_argument("--json", action="store_true", help="print every table as one JSON object")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each single-model path; the median is reported")
    args = ap.parse_args()
    fleets = [tuple(int(x) for x in part.split(":")) for part in args.models.split(",") if part]

    if hasattr(os, "sched_setaffinity"):  # a per-core rate: keep the process on one core, as a deployment would
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})  # children inherit it; not CPU 0 (interrupts)
    with tempfile.TemporaryDirectory(prefix="dw-bench-") as d:
        tmp = Path(d)
        events = tmp / "events.jsonl"
        records = write_stream(events, args.predictions)
        policy = tmp / "policy.yaml"
        policy.write_text(POLICY.format(model="m0"))
        # Interleaved repeats, each path's median reported with the spread: this kind of shared VM
        # moves single runs by ±15 %.
        bare_orjson(events)  # a warm-up round, not counted: the first run on this VM is often the slowest
        fresh_daemon_rate(events, [policy], tmp / "state-warm-up", replay=False)
        unlabeled = tmp / "predictions-only.jsonl"  # labels that never come: every prediction waits in the join
        unlabeled.write_bytes(b"".join(line for line in events.open("rb") if b'"label"' not in line))
        bases, replays, loops, waits, served = [], [], [], [], []
        for k in range(args.repeat):
            bases.append(bare_orjson(events))
            replays.append(fresh_daemon_rate(events, [policy], tmp / f"state-replay-{k}", replay=True))
            loops.append(fresh_daemon_rate(events, [policy], tmp / f"state-loop-{k}", replay=False))
            served.append(fresh_daemon_rate(events, [policy], tmp / f"state-http-{k}", replay=False, http=True))
            waits.append(fresh_daemon_rate(unlabeled, [policy], tmp / f"state-unlabeled-{k}", replay=False))
        base_cpu, base_wall = median(bases, key=lambda b: b[0])
        replay, loop = median(replays, key=lambda r: r["cpu_rate"]), median(loops, key=lambda r: r["cpu_rate"])
        wait = median(waits, key=lambda r: r["cpu_rate"])
        http = median(served, key=lambda r: r["cpu_rate"])
        many = [memory_run(tmp, models, predictions) for models, predictions in fleets]
        tiny = tmp / "tiny.jsonl"
        write_stream(tiny, 10)
        t_validate = startup_seconds(["validate", str(policy)])
        t_replay = startup_seconds(["replay", "--policy", str(policy), "--events", str(tiny), "--json"])

    result = {
        "records": records,
        "predictions": args.predictions,
        "features": 16,
        "repeat": args.repeat,
        "paths": [
            {
                "path": "bare orjson decode (baseline)",
                "cpu_rate": base_cpu,
                "wall_rate": base_wall,
                "ratio": 1.0,
                "runs": [b[0] for b in bases],
            },
            *(
                {
                    "path": name,
                    "cpu_rate": r["cpu_rate"],
                    "wall_rate": r["wall_rate"],
                    "ratio": None if r is wait else r["cpu_rate"] / base_cpu,  # another file than the baseline's
                    "runs": [x["cpu_rate"] for x in runs],
                }
                for name, r, runs in (
                    ("replay (JSON lines out)", replay, replays),
                    ("daemon loop (file source)", loop, loops),
                    (f"daemon loop + HTTP face, scraped every {SCRAPE_SECONDS:.0f} s", http, served),
                    ("daemon loop, predictions only (no label ever joins)", wait, waits),
                )
            ),
        ],
        "stages_us_per_record": loop["per_record_us"],
        "models": many,
        "startup_s": {"validate": t_validate, "replay_10_events": t_replay},
        "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0], "bench_peak_rss_mb": peak_rss_mb()},
    }
    if args.json:
        print(json.dumps(result))
        return
    print_tables(result)


TARGETS = {100: (120_000, None), 1000: (80_000, 1024)}
"""Issue 17's targets per model count: records/s per core, peak RSS in MB (restart: 5 s for all)."""


def print_tables(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"driftwarden throughput — {result['records']:,} records ({result['predictions']:,} predictions + "
        "labels), 16 features",
        header_style="bold",
    )
    for col in (
        "path",
        "records/s per core",
        f"spread of {result['repeat']} runs",
        "records/s wall",
        "ratio to bare orjson",
    ):
        table.add_column(col, justify="right" if col != "path" else "left")
    for p in result["paths"]:
        ratio = "–" if p["ratio"] is None else f"{p['ratio']:.2f}"
        table.add_row(p["path"], f"{p['cpu_rate']:,.0f}", spread(p["runs"]), f"{p['wall_rate']:,.0f}", ratio)
    stages = Table(title="time per stage (daemon loop), µs per record", header_style="bold")
    for k in result["stages_us_per_record"]:
        stages.add_column(k, justify="right")
    stages.add_row(*(f"{v:.2f}" for v in result["stages_us_per_record"].values()))
    fleet = Table(title="many models: one fleet policy, 20 features, labels 50 predictions later", header_style="bold")
    for col in (
        "models",
        "records",
        "records/s per core",
        "target",
        "floor of the design",
        "share of it",
        "peak RSS",
        "target",
        "restart",
        "state.db",
    ):
        fleet.add_column(col, justify="right")
    for m in result["models"]:
        rate_target, rss_target = TARGETS.get(m["models"], (None, None))
        fleet.add_row(
            f"{m['models']:,}",
            f"{m['records']:,}",
            f"{m['rate']:,.0f}",
            f"≥ {rate_target:,}" if rate_target else "",
            f"{m['floor_rate']:,.0f}",
            f"{m['rate'] / m['floor_rate']:.2f}",
            f"{m['rss_mb']:.0f} MB",
            f"≤ {rss_target:,} MB" if rss_target else "",
            f"{m['restart_s']:.2f} s (≤ 5 s)",
            f"{m['state_mb']:.0f} MB",
        )
    extra = Table(title="start-up", header_style="bold")
    extra.add_column("measure")
    extra.add_column("value", justify="right")
    extra.add_column("target", justify="right")
    if result["models"]:
        extra.add_row("RSS at start: interpreter and imports", f"{result['models'][0]['start_mb']:.0f} MB", "")
    extra.add_row("driftwarden validate (process)", f"{result['startup_s']['validate']:.2f} s", "≤ 1.5 s")
    extra.add_row(
        "driftwarden replay, 10 events (process)", f"{result['startup_s']['replay_10_events']:.2f} s", "≤ 1.5 s"
    )
    console = Console()
    for t in (table, stages, fleet, extra):
        console.print(t)
    m = result["machine"]
    console.print(
        f"machine: {m['cores']} cores, Python {m['python']}, peak RSS of this process {m['bench_peak_rss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
