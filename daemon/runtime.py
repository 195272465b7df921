"""The daemon loop: poll → decode → route by model → monitors and rules → checkpoint → commit → actions.

One loop in one thread, in a fixed order per micro-batch:

1. poll a batch of records from the source; skip any at or below the checkpointed position;
2. decode them (bad ones become dead letters) and route the events by model to its pipeline;
3. flush the sinks (dead letters, labeled-data segments);
4. write one checkpoint transaction: source positions, next event index, every pipeline's
   state and the new action intents;
5. commit the positions to the source;
6. hand the new intents to the action runner (which runs retrains in worker threads).

A crash anywhere replays at most the uncommitted batch, and processing is deterministic, so a
restarted daemon makes exactly the decisions an uninterrupted one would.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.actions import ActionRunner, JsonlSink
from daemon.config import Settings
from daemon.events import decode
from daemon.pipeline import ModelPipeline
from daemon.sources import FileSource, MemorySource, Record, Source
from daemon.store import Intent, Store
from deploy.registry import LocalRegistry
from policies.durations import parse_duration
from policies.engine import Decision
from policies.loader import LoadedPolicy

log = logging.getLogger("driftwarden.daemon")

Listener = Callable[[dict[str, Any]], None]


@dataclass
class RunStats:
    """What a run did; the ``summary`` line of ``--json`` output."""

    records: int = 0
    events: int = 0
    dead_letters: int = 0
    labels_joined: int = 0
    signals: int = 0
    decisions: int = 0
    unrouted: int = 0
    batches: int = 0
    seconds: float = 0.0
    by_model: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"type": "summary", "records": self.records, "events": self.events, "dead_letters": self.dead_letters,
                "labels_joined": self.labels_joined, "signals": self.signals, "decisions": self.decisions,
                "unrouted": self.unrouted, "seconds": round(self.seconds, 3), "models": self.by_model}


class Daemon:
    """The monitoring daemon over one source and a set of policies (one per model).

    >>> import tempfile, pathlib
    >>> from policies.loader import load_policy
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "p.yaml").write_text("version: 1\\nmodel: m\\nmonitors:\\n  e: {kind: adwin, series: error}\\n")
    >>> src = MemorySource([b'{"model": "m", "id": "1", "prediction": 1, "label": 1}', b'junk'])
    >>> daemon = Daemon(Settings(state_dir=d / "state"), src, [load_policy(d / "p.yaml")])
    >>> s = daemon.run(); daemon.close(); (s.records, s.events, s.dead_letters, s.labels_joined)
    (2, 1, 1, 1)
    """

    def __init__(
        self,
        settings: Settings,
        source: Source,
        policies: Sequence[LoadedPolicy],
        *,
        listener: Listener | None = None,
        synchronous_actions: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings, self.source, self.listener, self.clock = settings, source, listener, clock
        models = [p.model for p in policies]
        duplicates = sorted({m for m in models if models.count(m) > 1})
        if duplicates:
            raise ValueError(f"two policies for the same model: {', '.join(duplicates)}")
        self.policies = {p.model: p for p in policies}
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(settings.store_path)
        self.dead_letters = JsonlSink(settings.dead_letter_path)
        self.alerts = JsonlSink(settings.alerts_path)
        self.registry = LocalRegistry(settings.registry_path)
        self._next_index = self.store.next_index()
        self._positions = self.store.positions()
        ttl = parse_duration(settings.label_ttl)
        self.pipelines: dict[str, ModelPipeline] = {}
        for model, policy in self.policies.items():
            pipe = ModelPipeline(policy, settings.state_dir / "buffers" / model, ttl=ttl, upto=self._next_index - 1)
            state = self.store.pipeline_state(model)
            if state is not None:
                pipe.restore(state)
            self.pipelines[model] = pipe
        self.actions = ActionRunner(
            self.store, self.policies, self._training_data, settings.state_dir / "runs", self.registry, self.alerts,
            execute=settings.execute, synchronous=synchronous_actions, listener=self._emit, base=settings.state_dir,
        )
        self._stop = threading.Event()
        self._ticks: queue.Queue[tuple[str, str, float]] = queue.Queue()
        self._unrouted_logged: set[str] = set()
        self.stats = RunStats()
        if self._positions:
            log.info("resuming from checkpoint: positions %s, next event index %d", self._positions, self._next_index)
            source.seek(self._positions)
        self.actions.recover()

    # -- control -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to stop after the current batch (SIGTERM/SIGINT do this)."""
        self._stop.set()

    def tick(self, model: str, rule: str, now: float | None = None) -> None:
        """A scheduled rule's time came (called from the scheduler thread)."""
        self._ticks.put((model, rule, self.clock() if now is None else now))

    def close(self) -> None:
        self.actions.wait()
        self.source.close()
        self.store.close()

    def _emit(self, item: dict[str, Any]) -> None:
        if self.listener is not None:
            self.listener(item)

    # -- the loop ------------------------------------------------------------------------------

    def run(self, count: int | None = None, timeout: float | None = None) -> RunStats:
        """Process until the source is exhausted, ``count`` records were read, ``timeout`` seconds
        passed, or :meth:`stop` was called; return the counts."""
        started = time.monotonic()
        read = 0
        while not self._stop.is_set():
            self._drain_ticks()
            if count is not None and read >= count:
                break
            if timeout is not None and time.monotonic() - started >= timeout:
                break
            if self.source.exhausted:
                break
            want = self.settings.batch_size if count is None else min(self.settings.batch_size, count - read)
            records = self.source.poll(want, self.settings.poll_timeout)
            if not records:
                continue
            read += len(records)
            self.process(records)
        self._drain_ticks()
        self.stats.seconds += time.monotonic() - started
        self.stats.by_model = {m: p.stats() for m, p in self.pipelines.items()}
        return self.stats

    def process(self, records: Sequence[Record]) -> None:
        """One micro-batch, in the order the module docstring gives."""
        fresh = [r for r in records if r.offset >= self._positions.get(r.partition, 0)]
        self.stats.records += len(records)
        if not fresh:
            return
        first = self._next_index
        events, dead = decode(fresh, first_index=first, arrival=self.clock())
        self._next_index = first + len(fresh)
        positions = dict(self._positions)
        for r in fresh:
            positions[r.partition] = max(positions.get(r.partition, 0), r.offset + 1)
        by_model: dict[str, list[Any]] = {}
        for e in events:
            if e.model in self.pipelines:
                by_model.setdefault(e.model, []).append(e)
            else:
                self.stats.unrouted += 1
                if e.model not in self._unrouted_logged:
                    self._unrouted_logged.add(e.model)
                    log.warning("events for model %r have no policy; they are counted and ignored", e.model)
        outputs: list[dict[str, Any]] = []
        decisions: list[Decision] = []
        for model, model_events in by_model.items():
            pipe = self.pipelines[model]
            joined_before = pipe.joiner.joined
            signals, model_decisions = pipe.process(model_events)
            self.stats.labels_joined += pipe.joiner.joined - joined_before
            outputs += signals
            decisions += model_decisions
        for d in dead:
            self.dead_letters.write(d.as_dict())
            outputs.append({"type": "dead_letter", "model": None, **d.as_dict()})
        self.dead_letters.flush()
        for pipe in self.pipelines.values():
            pipe.engine.dead_letters += len(dead)
            pipe.buffer.flush()
        decisions.sort(key=lambda d: (d.at, d.model, d.rule))
        new = self._checkpoint(positions, decisions, outputs)
        self.source.commit(positions)
        self._positions = positions
        self.stats.events += len(events)
        self.stats.dead_letters += len(dead)
        self.stats.signals += sum(1 for o in outputs if o["type"] == "signal")
        self.stats.decisions += len(decisions)
        self.stats.batches += 1
        outputs += [{"type": "decision", **d.as_dict()} for d in decisions]
        outputs.sort(key=lambda o: (o.get("at", o.get("index", 0)), _ORDER[o["type"]]))
        for o in outputs:
            self._emit(o)
        self.actions.submit(new)

    def _checkpoint(self, positions: Mapping[str, int], decisions: Sequence[Decision], outputs: Sequence[dict[str, Any]]) -> list[str]:
        intents = [Intent(d.key, d.model, d.rule, d.action, d.action_type, d.at, d.ts, d.as_dict()) for d in decisions]
        audit = [(o.get("model"), o["type"], None, o) for o in outputs if o["type"] == "signal" and o.get("drift")]
        audit += [(d.model, "decision", d.key, d.as_dict()) for d in decisions]
        return self.store.checkpoint(
            positions, self._next_index, {m: p.snapshot() for m, p in self.pipelines.items()}, intents, audit
        )

    def _drain_ticks(self) -> None:
        decisions = []
        while True:
            try:
                model, rule, now = self._ticks.get_nowait()
            except queue.Empty:
                break
            pipe = self.pipelines.get(model)
            if pipe is None:
                continue
            d = pipe.engine.scheduled(rule, now, at=max(self._next_index - 1, 0))
            if d is not None:
                decisions.append(d)
        if decisions:
            new = self._checkpoint(self._positions, decisions, [])
            self.stats.decisions += len(decisions)
            for d in decisions:
                self._emit({"type": "decision", **d.as_dict()})
            self.actions.submit(new)

    def _training_data(self, model: str, upto: int, last: int) -> Any:
        """Features, ``__label`` and the row's ``__id``/``__ts``/``__index``: what trainers receive."""
        frame = self.pipelines[model].buffer.frame(upto=upto, last=last)
        keep = [c for c in frame.columns if not str(c).startswith("__") or c in TRAINING_META]
        return frame[keep]


TRAINING_META = ("__label", "__id", "__ts", "__index")

_ORDER = {"dead_letter": 0, "signal": 1, "decision": 2, "action": 3}


def make_source(settings: Settings) -> Source:
    """The source the settings describe."""
    src = settings.source
    if src.kind == "file":
        assert src.path is not None
        return FileSource(Path(src.path), fmt=src.format, pace=src.pace)
    if src.kind == "kafka":
        from daemon.kafka_io import KafkaSource

        return KafkaSource(src.bootstrap, src.topics, src.group_id, settings=src.settings)  # type: ignore[arg-type]
    return MemorySource(closed=False)
