"""Seeded event streams, policies and settings for the daemon-over-Kafka tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from driftwarden.daemon.config import Settings
from driftwarden.daemon.io.kafka.admin import read_messages
from driftwarden.daemon.io.kafka.sink import KafkaSink
from driftwarden.daemon.io.sources import MemorySource
from driftwarden.daemon.runtime import Daemon
from driftwarden.daemon.wiring import open_source
from driftwarden.policies.loader import LoadedPolicy, load_policy

# Fast group membership: a rebalance is noticed within one heartbeat.
FAST_GROUP = {"heartbeat_interval_ms": 300, "session_timeout_ms": 6000}
# Every wait in these tests is bounded by this.
WAIT_S = 240.0  # a hang guard; a loaded shared VM has needed more than 90 s
T0 = 1_800_000_000.0

POLICY = """\
version: 1
model: {model}
monitors:
  inputs: {{kind: feature_drift, features: [x, y], window: {{events: 300}}, method: auto}}
  errors: {{kind: adwin, series: error}}
rules:
  - name: input-drift
    when: "inputs.drift"
    cooldown: 10m
    do: alert
  - name: concept-drift
    when: "errors.drift"
    cooldown: 10m
    severity: critical
    do: alert
"""


def policies(root: Path, models: Sequence[str]) -> list[Path]:
    """One alert-only policy per model (feature drift on x, y; ADWIN on the errors)."""
    paths = []
    for m in models:
        p = root / f"{m}.yaml"
        p.write_text(POLICY.format(model=m))
        paths.append(p)
    return paths


def loaded(paths: Iterable[Path]) -> list[LoadedPolicy]:
    return [load_policy(p) for p in paths]


def stream(model: str, n: int, seed: int, drift_at: float = 0.5) -> list[bytes]:
    """``n`` labeled predictions of ``model``, one per second of event time; from ``drift_at``
    on, x shifts and the model's error rate rises from 10 % to 45 %."""
    rng = np.random.default_rng(seed)
    out = []
    cut = int(n * drift_at)
    for i in range(n):
        drifted = i >= cut
        x = float(rng.normal(1.5 if drifted else 0.0, 1.0))
        y = float(rng.normal(0.0, 1.0))
        pred = int(rng.random() < 0.5)
        wrong = rng.random() < (0.45 if drifted else 0.1)
        out.append(
            orjson.dumps(
                {
                    "model": model,
                    "id": f"{model}-{i}",
                    "ts": T0 + i,
                    "features": {"x": x, "y": y},
                    "prediction": pred,
                    "score": 0.5,
                    "label": 1 - pred if wrong else pred,
                }
            )
        )
    return out


def interleave(streams: dict[str, list[bytes]]) -> list[bytes]:
    """Round-robin over the models (each model's own order kept)."""
    out: list[bytes] = []
    longest = max(len(s) for s in streams.values())
    for i in range(longest):
        out.extend(s[i] for s in streams.values() if i < len(s))
    return out


def produce(bootstrap: str, topic: str, values: Iterable[bytes], key: Callable[[bytes], bytes] | None = None) -> int:
    """Send ``values`` keyed by their model (or ``key(value)``); returns how many."""
    sink = KafkaSink(bootstrap, topic, linger_ms=5)
    n = 0
    for v in values:
        k = key(v) if key is not None else orjson.loads(v)["model"].encode()
        sink.send(v, key=k)
        n += 1
    sink.flush()
    sink.close()
    return n


def settings(state: Path, bootstrap: str, topics: list[str], group: str, paths: list[Path], **extra: Any) -> Settings:
    data: dict[str, Any] = {
        "policies": [str(p) for p in paths],
        "state_dir": str(state),
        "batch_size": 500,
        "poll_timeout": 0.2,
        "checkpoint_records": 1000,
        "source": {
            "kind": "kafka",
            "bootstrap": bootstrap,
            "topics": topics,
            "group_id": group,
            "settings": dict(FAST_GROUP),
        },
    }
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(data.get(k), dict):
            data[k] = {**data[k], **v}
        else:
            data[k] = v
    return Settings.model_validate(data)


def kafka_daemon(s: Settings, paths: list[Path], **kwargs: Any) -> Daemon:
    return Daemon(s, open_source(s), loaded(paths), **kwargs)


def member(name: str, *, root: Path, bootstrap: str, topic: str, group: str, paths: list[Path], **extra: Any) -> Daemon:
    """One of several daemons of consumer group ``group`` on ``topic``, its state in ``root/name`` (``extra``:
    more :func:`settings`); tests bind all but ``name`` with ``functools.partial``."""
    return kafka_daemon(settings(root / name, bootstrap, [topic], group, paths, **extra), paths)


def events_seen(daemon: Daemon) -> dict[str, int]:
    """Events each owned model's engine has counted (its state, wherever it was built)."""
    own = daemon.ownership
    return {m: p.engine.events for m, p in daemon.pipelines.items() if own is None or own.owns(m)}


class Runner:
    """A daemon's loop in its own thread (as in production, one loop per process), until :meth:`stop`."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.seen: dict[str, int] = {}
        """:func:`events_seen` when the loop stopped, before close() gave the partitions up."""
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.daemon.run()
        except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
            self.error = e

    def where(self) -> dict[str, Any]:
        """What a hung wait reports: the loop's counters and the partitions its source holds."""
        source = self.daemon.source
        assigned = source.assignment() if hasattr(source, "assignment") else None
        return {"stats": self.daemon.stats.summary(), "assigned": assigned, "alive": self.thread.is_alive()}

    def stop(self, close: bool = True) -> None:
        self.daemon.stop()
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), "the daemon's loop did not stop"
        self.seen = events_seen(self.daemon)
        if close:
            self.daemon.close()
        if self.error is not None:
            raise self.error


def wait_for(done: Callable[[], bool], runners: Sequence[Runner] = (), timeout: float = WAIT_S) -> None:
    """Wait until ``done()``; fail at ``timeout`` or when a runner's loop died."""
    deadline = time.monotonic() + timeout
    while not done():
        for r in runners:
            if r.error is not None:
                raise r.error
        assert time.monotonic() < deadline, f"not done within {timeout} s: {[r.where() for r in runners]}"
        time.sleep(0.1)


def reference(paths: list[Path], values: list[bytes], state: Path) -> list[dict[str, Any]]:
    """Decisions of the same policies over ``values`` from memory, no Kafka."""
    out: list[dict[str, Any]] = []
    d = Daemon(
        Settings(state_dir=state, batch_size=500, execute=False),
        MemorySource(values),
        loaded(paths),
        listener=lambda item: out.append(item) if item["type"] == "decision" else None,
    )
    d.run()
    d.close()
    return out


def decided(items: Iterable[dict[str, Any]]) -> list[tuple[str, str, float]]:
    """Decisions as (model, rule, event ts), sorted: what does not depend on the event index."""
    return sorted((d["model"], d["rule"], d["ts"]) for d in items)


def topic_json(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    return [{**orjson.loads(m.value), "_headers": m.headers} for m in read_messages(bootstrap, topic) if m.value]
