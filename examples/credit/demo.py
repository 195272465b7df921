"""``driftwarden demo``: the whole lifecycle on bundled data, in one of two modes.

In both, a serving app scores a stream of loan applications with whatever model is deployed in
``<out>/serving/credit``, sends each prediction to the daemon and each true label
``label_delay`` predictions later. At a known point the world changes (see
:mod:`driftwarden.examples.credit.scenario`); driftwarden notices, retrains, gates and deploys, and the
serving app serves the new model from then on.

``run_demo_live`` (``--live``, the default) closes the loop process to process: the example model
server (:mod:`driftwarden.examples.credit.server`) serves the predictions and appends them and the labels to
``<out>/events.jsonl``; a ``driftwarden run --follow`` process reads that file and deploys the
retrained model through the server's ``/reload``; this process is only the client, sending the
scenario's requests and labels over HTTP, a chunk at a time (the labels due, then the chunk's
predictions). After each chunk it waits until the daemon has checkpointed everything written so
far and no action is in flight (it reads the daemon's SQLite store read-only), so a model swap
always falls on a chunk boundary and the run is reproducible. The timeline is the daemon's own
``--json`` output; the server's and daemon's logs are ``<out>/server.log`` and ``<out>/daemon.log``.

``run_demo`` (``--in-process``) needs no service: the serving app is simulated in-process, pushes
events into a memory source interleaved one by one, and actions run synchronously — the stream
waits for training — so it is reproducible event for event.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import queue
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from driftwarden.daemon.config import Settings
from driftwarden.daemon.io.sources import MemorySource
from driftwarden.daemon.runtime import Daemon, RunStats
from driftwarden.daemon.state.store import Store
from driftwarden.deploy.registry import LocalRegistry
from driftwarden.deploy.states import ActionState
from driftwarden.deploy.targets import LocalTarget
from driftwarden.policies.loader import load_policy
from threadpoolctl import threadpool_limits

MODEL = "credit"
MARKER = ".driftwarden-demo"
EXAMPLES = Path(__file__).resolve().parent
#: Threads for scoring a chunk: OpenMP's thread team costs more than a 100-row batch of trees is worth
#: (18x the CPU of one thread, measured on a loaded 2-core machine; the predictions are the same).
SCORING_THREADS = 1
START_TS = 1_796_140_800.0  # 2026-11-27T00:00:00Z; one prediction per second of event time


@dataclass
class DemoResult:
    out: Path
    drift_at: int
    drift_at_prediction: int
    detected_at: int | None = None
    retrain_at: int | None = None
    deployed_at: int | None = None
    deployed_version: str | None = None
    candidate: dict[str, float] | None = None
    champion: dict[str, float] | None = None
    accuracy: dict[str, float | None] = field(default_factory=dict)
    report: Path | None = None
    stats: RunStats | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    """The daemon's ``summary`` line (in-process: ``stats.summary()``)."""
    mode: str = "in-process"

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "drift_at": self.drift_at,
            "detected_at": self.detected_at,
            "retrain_at": self.retrain_at,
            "deployed_at": self.deployed_at,
            "deployed_version": self.deployed_version,
            "candidate": self.candidate,
            "champion": self.champion,
            "accuracy": self.accuracy,
            "report": str(self.report) if self.report else None,
            "mode": self.mode,
        }


class ServingApp:
    """Scores requests with the model in the serving directory; reloads when a deploy switched it."""

    def __init__(self, serving: Path) -> None:
        self.serving = serving
        self.version: str | None = None
        self.model: Any = None

    def score(self, batch: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Predicted classes and positive-class scores of ``batch``: one ``predict_proba`` (``predict`` is the
        argmax of the same probabilities), on one thread (see :data:`SCORING_THREADS`)."""
        with threadpool_limits(limits=SCORING_THREADS, user_api="openmp"):
            proba = self.model.predict_proba(batch)
        return self.model.classes_[np.argmax(proba, axis=1)], proba[:, 1]

    def refresh(self) -> str:
        version = (self.serving / "VERSION").read_text().strip()
        if version != self.version:
            self.model = pickle.loads((self.serving / "model.pkl").read_bytes())
            self.version = version
        return version


def _track(result: DemoResult, item: dict[str, Any]) -> None:
    """Note in ``result`` what a daemon line tells: first drift, the retrain, the gate, the deploy."""
    kind = item["type"]
    if kind == "signal" and item.get("drift") and result.detected_at is None:
        result.detected_at = item["at"]
    if kind == "decision" and item.get("action_type") == "retrain" and result.retrain_at is None:
        result.retrain_at = item["at"]
    if kind == "action" and item["state"] == ActionState.DEPLOYED and result.deployed_version is None:
        result.deployed_version = item.get("version")
        result.candidate, result.champion = item.get("candidate"), item.get("champion")
    if (
        kind == "action"
        and item["state"] in (ActionState.EVALUATING, ActionState.REJECTED, ActionState.PROMOTED)
        and item.get("candidate")
    ):
        result.candidate, result.champion = item.get("candidate"), item.get("champion")


def prepare_out(out: Path) -> None:
    """Start from an empty output folder; refuse to wipe one the demo did not create."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise SystemExit(f"{out} exists and is not a demo folder; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by driftwarden demo; deleted by the next demo run\n")


def bootstrap_champion(out: Path, history: tuple[pd.DataFrame, np.ndarray]) -> str:
    """Train the first model on pre-drift history, register it as champion and deploy it."""
    from driftwarden.examples.credit.train import train

    X, y = history
    art = out / "bootstrap"
    art.mkdir(parents=True, exist_ok=True)
    (art / "model.pkl").write_bytes(pickle.dumps(train(X, pd.Series(y), {})))
    registry = LocalRegistry(out / "registry")
    version = registry.register(MODEL, art, {"source": "demo bootstrap", "rows": len(X)})
    registry.set_alias(MODEL, "champion", version.version)
    LocalTarget(out / "serving" / MODEL).deploy(version)
    return version.version


def run_demo(
    out: Path,
    *,
    n: int = 16_000,
    drift_at: int = 8_000,
    seed: int = 7,
    label_delay: int = 100,
    chunk: int = 100,
    listener: Callable[[dict[str, Any]], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DemoResult:
    """Run the scenario; ``listener`` sees the scenario line and every signal, decision and action."""
    from driftwarden.examples.credit.scenario import Scenario

    emit = listener or (lambda item: None)
    out = Path(out)
    prepare_out(out)
    world = Scenario(n=n, drift_at=drift_at, seed=seed)
    X, y = world.sample()
    first_version = bootstrap_champion(out, world.history())
    policy = load_policy(EXAMPLES / "policy.yaml")
    settings = Settings(state_dir=out, registry=out / "registry", batch_size=chunk * 2)

    # The daemon's event index counts every record; labels interleave with predictions.
    records_before_drift = drift_at + max(0, drift_at - label_delay + 1)
    result = DemoResult(out=out, drift_at=records_before_drift, drift_at_prediction=drift_at)
    emit(
        {
            "type": "scenario",
            "model": MODEL,
            "at": 0,
            "ts": START_TS,
            "drift_at": records_before_drift,
            "drift_at_prediction": drift_at,
            "predictions": n,
            "label_delay": label_delay,
            "champion": first_version,
            "mode": "in-process",
            "description": "Agrawal rule 2 -> rule 6 with older applicants and newer cars",
        }
    )

    def on_item(item: dict[str, Any]) -> None:
        _track(result, item)
        emit(item)

    source = MemorySource(closed=False)
    daemon = Daemon(settings, source, [policy], listener=on_item, synchronous_actions=True)
    app = ServingApp(out / "serving" / MODEL)
    records: list[bytes] = []
    correct = np.zeros(n, dtype=bool)
    served_by: list[str] = []
    index_of_prediction = np.zeros(n, dtype=np.int64)
    features = X.to_dict("records")
    for start in range(0, n, chunk):
        version = app.refresh()
        stop = min(n, start + chunk)
        batch = X.iloc[start:stop]
        predictions, scores = app.score(batch)
        pushed: list[bytes] = []
        for i in range(start, stop):
            j = i - label_delay
            if j >= 0:
                pushed.append(_label_event(j, int(y[j]), START_TS + i))
            index_of_prediction[i] = len(records) + len(pushed)
            pushed.append(
                _prediction_event(i, features[i], int(predictions[i - start]), float(scores[i - start]), START_TS + i)
            )
            correct[i] = predictions[i - start] == y[i]
            served_by.append(version)
        records += pushed
        source.push(pushed)
        daemon.run(count=len(pushed))
        if progress:
            progress(stop, n)
    tail = [_label_event(j, int(y[j]), START_TS + n + k) for k, j in enumerate(range(max(0, n - label_delay), n))]
    records += tail
    source.push(tail)
    source.close_input()
    result.stats = daemon.run()
    result.summary = result.stats.summary()
    daemon.close()
    (out / "events.jsonl").write_bytes(b"\n".join(records) + b"\n")
    if index_of_prediction[drift_at] != records_before_drift:
        raise RuntimeError("the scenario line announced a drift index the stream did not have")

    return _finish(result, out, X, np.array(served_by), first_version, correct, index_of_prediction, drift_at)


# -- the live demo: server, daemon and client as three processes ------------------------------

LIVE_CHECKPOINT_SECONDS = 0.2
"""The daemon's checkpoint interval in the live demo: its progress is what the client waits for."""

STARTUP_TIMEOUT = 60.0
"""Seconds the server may take to print its address, and the daemon to create its store."""

CHUNK_TIMEOUT = 300.0
"""Seconds the daemon may take to catch up with one chunk (a retrain included)."""

STOP_TIMEOUT = 20.0
"""Seconds a child process has to exit after SIGTERM before it is killed."""


class DemoError(RuntimeError):
    """The live demo could not run: a child process failed or did not keep up."""


def chunk_layout(n: int, chunk: int, label_delay: int) -> tuple[list[tuple[range, range]], np.ndarray]:
    """What the client sends per chunk — the labels due (``label_delay`` predictions late), then the
    chunk's predictions — and each prediction's event index in the events file.

    >>> layout, index = chunk_layout(6, 2, 3)
    >>> [(list(labels), list(preds)) for labels, preds in layout]
    [([], [0, 1]), ([0], [2, 3]), ([1, 2], [4, 5])]
    >>> index.tolist()
    [0, 1, 3, 4, 7, 8]
    """
    layout: list[tuple[range, range]] = []
    index = np.zeros(n, dtype=np.int64)
    written = 0
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        labels = range(max(0, start - label_delay), max(0, stop - label_delay))
        written += len(labels)
        index[start:stop] = np.arange(written, written + stop - start)
        written += stop - start
        layout.append((labels, range(start, stop)))
    return layout, index


class DaemonProgress:
    """The daemon's progress, read from its store opened read-only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._store: Store | None = None

    def _open(self) -> Store | None:
        if self._store is None and self.path.exists():
            try:
                self._store = Store(self.path, readonly=True)
            except sqlite3.Error:  # created but no schema yet
                self._store = None
        return self._store

    def caught_up(self, written: int) -> bool:
        """The daemon checkpointed ``written`` records and runs no action."""
        store = self._open()
        if store is None:
            return False
        try:
            return store.next_index() >= written and not store.unfinished_actions()
        except sqlite3.OperationalError:  # busy: look again
            return False

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
        self._store = None


def _call(url: str, body: Any = None, timeout: float = 30.0) -> Any:
    data = None if body is None else orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    req = urllib.request.Request(
        url, data=data, method="GET" if body is None else "POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return orjson.loads(resp.read())


PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal a child gets when its parent dies."""


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the demo dies, even by SIGKILL (Linux; elsewhere nothing).

    The server and the daemon run in sessions of their own (so a Ctrl-C reaches the demo alone); without this a
    killed demo would leave them running.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _stop(proc: subprocess.Popen[bytes] | None, name: str) -> None:
    """SIGTERM, then SIGKILL to its whole process group (a trainer it started included)."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        print(f"driftwarden demo: {name} (pid {proc.pid}) ignored SIGTERM; killing it", file=sys.stderr)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)
    except ProcessLookupError:
        pass


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


def _start_server(out: Path, events: Path) -> tuple[subprocess.Popen[bytes], str]:
    log_file = (out / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "driftwarden.examples.credit.server",
            "--serving",
            str(out / "serving" / MODEL),
            "--events",
            str(events),
            "--model",
            MODEL,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ],
        env=_child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log_file,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    log_file.close()
    assert proc.stdout is not None
    deadline = time.monotonic() + STARTUP_TIMEOUT
    line = b""
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            _stop(proc, "model server")
            raise DemoError(
                f"the model server printed no address in {STARTUP_TIMEOUT:.0f} s:\n{_tail(out / 'server.log')}"
            )
        byte = os.read(proc.stdout.fileno(), 1)
        if not byte:
            proc.wait(timeout=STOP_TIMEOUT)
            raise DemoError(f"the model server exited ({proc.returncode}):\n{_tail(out / 'server.log')}")
        line += byte
    return proc, line.decode().split()[-1]


def _live_policy(out: Path, url: str) -> Path:
    """The example policy, deploying through the server's reload endpoint."""
    import yaml

    spec = yaml.safe_load((EXAMPLES / "policy.yaml").read_text())
    spec["actions"]["retrain"]["deploy"] = {
        "target": "http",
        "path": f"serving/{MODEL}",
        "url": f"{url}/reload",
        "health": f"{url}/health",
    }
    path = out / "policy.yaml"
    path.write_text(
        "# examples/credit/policy.yaml, deploying through the demo's model server\n"
        + yaml.safe_dump(spec, sort_keys=False)
    )
    return path


def _start_daemon(out: Path, policy: Path, events: Path, batch_size: int) -> subprocess.Popen[bytes]:
    import yaml

    config = out / "daemon.yaml"
    # Every batch is checkpointed (checkpoint_records: 1) so that the store shows the daemon's
    # progress as soon as it has read what the client sent; the seconds bound is then moot.
    config.write_text(
        yaml.safe_dump(
            {
                "policies": [str(policy)],
                "source": {"kind": "file", "path": str(events)},
                "state_dir": str(out),
                "registry": str(out / "registry"),
                "batch_size": batch_size,
                "poll_timeout": 0.2,
                "checkpoint_records": 1,
                "checkpoint_seconds": LIVE_CHECKPOINT_SECONDS,
                "http": {"listen": "127.0.0.1:0"},  # the status page, on a free port (written to http.url)
            },
            sort_keys=False,
        )
    )
    log_file = (out / "daemon.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "driftwarden.daemon.cli",
            "run",
            "--config",
            str(config),
            "--follow",
            "--json",
            "--log-level",
            "warning",
        ],
        env=_child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log_file,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    log_file.close()
    return proc


def _page_url(out: Path, daemon: subprocess.Popen[bytes]) -> str:
    """The daemon's status page, once it listens (it writes ``http.url`` before its first poll)."""
    url_file = out / "http.url"
    deadline = time.monotonic() + CHUNK_TIMEOUT
    while not url_file.is_file() or not url_file.read_text().strip():
        if daemon.poll() is not None:
            raise DemoError(f"the daemon exited ({daemon.returncode}):\n{_tail(out / 'daemon.log')}")
        if time.monotonic() > deadline:
            raise DemoError(f"the daemon did not serve HTTP within {CHUNK_TIMEOUT:.0f} s")
        time.sleep(0.02)
    return url_file.read_text().strip() + "/"


def _read_lines(stream: Any, lines: queue.Queue[dict[str, Any] | None]) -> None:
    """The daemon's JSON lines, into ``lines``; None at its end."""
    try:
        for raw in stream:
            if raw.startswith(b"{"):
                try:
                    lines.put(orjson.loads(raw))
                except orjson.JSONDecodeError:
                    pass
    finally:
        lines.put(None)


def run_demo_live(
    out: Path,
    *,
    n: int = 16_000,
    drift_at: int = 8_000,
    seed: int = 7,
    label_delay: int = 100,
    chunk: int = 100,
    listener: Callable[[dict[str, Any]], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    page: Callable[[str], None] | None = None,
    serve: Callable[[str], None] | None = None,
) -> DemoResult:
    """The scenario with the model server and the daemon as real processes (module docstring);
    ``listener`` sees the scenario line and then the daemon's lines, all but its summary. The daemon
    serves its status page on a free loopback port: ``page`` is told its URL once it listens, and
    ``serve`` (when given) is called with it after the scenario and returns when the daemon may stop."""
    from driftwarden.examples.credit.scenario import Scenario

    emit = listener or (lambda item: None)
    out = Path(out).resolve()
    prepare_out(out)
    world = Scenario(n=n, drift_at=drift_at, seed=seed)
    X, y = world.sample()
    first_version = bootstrap_champion(out, world.history())
    events = out / "events.jsonl"
    events.touch()
    layout, index_of_prediction = chunk_layout(n, chunk, label_delay)
    records_before_drift = int(index_of_prediction[drift_at])
    result = DemoResult(out=out, drift_at=records_before_drift, drift_at_prediction=drift_at, mode="live")
    features = X.to_dict("records")
    correct = np.zeros(n, dtype=bool)
    served_by = np.empty(n, dtype=object)
    lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
    ended = threading.Event()
    watcher = DaemonProgress(out / "state.db")
    server = daemon = None
    reader: threading.Thread | None = None

    def on_item(item: dict[str, Any]) -> None:
        if item["type"] == "summary":
            result.summary = item
            return
        _track(result, item)
        emit(item)

    def drain() -> None:
        while True:
            try:
                item = lines.get_nowait()
            except queue.Empty:
                return
            if item is None:
                ended.set()
            else:
                on_item(item)

    def wait_for_daemon(written: int) -> None:
        deadline = time.monotonic() + CHUNK_TIMEOUT
        while not watcher.caught_up(written):
            drain()
            assert daemon is not None
            if daemon.poll() is not None:
                raise DemoError(f"the daemon exited ({daemon.returncode}):\n{_tail(out / 'daemon.log')}")
            if time.monotonic() > deadline:
                raise DemoError(
                    f"the daemon did not process {written} records in {CHUNK_TIMEOUT:.0f} s:\n"
                    f"{_tail(out / 'daemon.log')}"
                )
            time.sleep(0.005)
        drain()

    previous_sigterm = None
    if threading.current_thread() is threading.main_thread():  # SIGTERM stops the children too

        def on_sigterm(signum: int, _frame: Any) -> None:
            raise SystemExit(128 + signum)

        previous_sigterm = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        server, url = _start_server(out, events)
        emit(
            {
                "type": "scenario",
                "model": MODEL,
                "at": 0,
                "ts": START_TS,
                "drift_at": records_before_drift,
                "drift_at_prediction": drift_at,
                "predictions": n,
                "label_delay": label_delay,
                "champion": first_version,
                "mode": "live",
                "server": url,
                "description": "Agrawal rule 2 -> rule 6 with older applicants and newer cars",
            }
        )
        daemon = _start_daemon(out, _live_policy(out, url), events, batch_size=chunk * 2)
        reader = threading.Thread(target=_read_lines, args=(daemon.stdout, lines), name="daemon-lines", daemon=True)
        reader.start()
        page_url = _page_url(out, daemon)
        if page is not None:
            page(page_url)
        written = 0
        for labels, predictions in layout:
            if len(labels):
                _call(
                    f"{url}/label",
                    {
                        "labels": [
                            {"id": f"a-{j:06d}", "ts": START_TS + j + label_delay, "label": int(y[j])} for j in labels
                        ]
                    },
                )
            answers = _call(
                f"{url}/predict",
                {"instances": [{"id": f"a-{i:06d}", "ts": START_TS + i, "features": features[i]} for i in predictions]},
            )["predictions"]
            for i, answer in zip(predictions, answers, strict=True):
                correct[i] = answer["prediction"] == y[i]
                served_by[i] = answer["version"]
            written += len(labels) + len(predictions)
            wait_for_daemon(written)
            if progress:
                progress(predictions.stop, n)
        tail = range(max(0, n - label_delay), n)
        if len(tail):
            _call(
                f"{url}/label",
                {
                    "labels": [
                        {"id": f"a-{j:06d}", "ts": START_TS + n + k, "label": int(y[j])} for k, j in enumerate(tail)
                    ]
                },
            )
            written += len(tail)
            wait_for_daemon(written)
        if serve is not None:
            serve(page_url)
            drain()
        daemon.send_signal(signal.SIGTERM)  # stops after the current batch and prints its summary
        daemon.wait(timeout=STOP_TIMEOUT)
        reader.join(timeout=STOP_TIMEOUT)
        drain()
        if daemon.returncode != 0 or not result.summary:
            raise DemoError(f"the daemon exited {daemon.returncode} without a summary:\n{_tail(out / 'daemon.log')}")
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
        watcher.close()
        _stop(daemon, "daemon")
        _stop(server, "model server")
        if reader is not None:
            reader.join(timeout=STOP_TIMEOUT)
        for proc in (daemon, server):
            if proc is not None and proc.stdout is not None:
                proc.stdout.close()

    return _finish(result, out, X, np.asarray(served_by), first_version, correct, index_of_prediction, drift_at)


def _finish(
    result: DemoResult,
    out: Path,
    X: pd.DataFrame,
    served_by: np.ndarray,
    first_version: str,
    correct: np.ndarray,
    index_of_prediction: np.ndarray,
    drift_at: int,
) -> DemoResult:
    """Accuracy before the drift, during it and after the new model served its first request; the report."""
    new = np.flatnonzero(served_by != first_version)
    switch = int(new[0]) if len(new) else len(correct)
    if len(new):
        result.deployed_at = int(index_of_prediction[switch])
    result.accuracy = {
        "before": _mean(correct[:drift_at]),
        "during": _mean(correct[drift_at:switch]),
        "after": _mean(correct[switch:]) if len(new) else None,
    }
    if result.retrain_at is not None:
        result.report = _report(out, X, index_of_prediction, result.retrain_at)
    return result


def _mean(a: np.ndarray) -> float | None:
    return round(float(a.mean()), 4) if len(a) else None


def _prediction_event(i: int, features: dict[str, Any], prediction: int, score: float, ts: float) -> bytes:
    return orjson.dumps(
        {
            "model": MODEL,
            "id": f"a-{i:06d}",
            "ts": ts,
            "features": features,
            "prediction": prediction,
            "score": round(score, 6),
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def _label_event(i: int, label: int, ts: float) -> bytes:
    return orjson.dumps({"model": MODEL, "id": f"a-{i:06d}", "ts": ts, "label": label})


def _report(out: Path, X: pd.DataFrame, index_of_prediction: np.ndarray, at: int, window: int = 1000) -> Path | None:
    """Evidently's drift report: the first window (the reference) against the window before the retrain decision."""
    from driftwarden.detectors.evidently_adapter import render_drift_report

    upto = int(np.searchsorted(index_of_prediction, at, "right"))
    current = X.iloc[max(0, upto - window) : upto]
    return render_drift_report(
        X.iloc[:window],
        current,
        out / "report.html",
        title=f"credit: reference vs the {len(current)} predictions before the retrain decision",
    )
