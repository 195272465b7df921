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

import datetime as dt
import gc
import logging
import queue
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftwarden.daemon.actions import ActionRunner
from driftwarden.daemon.alerting.alerts import Notification
from driftwarden.daemon.alerting.evidence import Evidence
from driftwarden.daemon.alerting.outbox import Outbox
from driftwarden.daemon.checkpoint import Checkpoint
from driftwarden.daemon.config import Settings
from driftwarden.daemon.heap import HeapTrimmer
from driftwarden.daemon.http.control import Commands
from driftwarden.daemon.http.snapshot import Publisher
from driftwarden.daemon.io.backpressure import Flow, pending_outputs, running_actions
from driftwarden.daemon.io.batch_decoder import decode_batch
from driftwarden.daemon.io.events import EventRows
from driftwarden.daemon.io.private import private_folder
from driftwarden.daemon.io.sinks import JsonlSink, ModelUpdates
from driftwarden.daemon.io.sources import Record, Source, rebalances
from driftwarden.daemon.io.watermark import TimeGuard
from driftwarden.daemon.pipeline import ModelPipeline
from driftwarden.daemon.state.labeled_buffer import missing_segments
from driftwarden.daemon.state.store import Intent, StateCorrupt, Store, WaitingDelta
from driftwarden.daemon.state.unrouted import Unrouted
from driftwarden.daemon.wiring import build_sinks
from driftwarden.deploy.registry import CHAMPION, LocalRegistry, open_registry
from driftwarden.policies.durations import parse_duration
from driftwarden.policies.engine import Decision
from driftwarden.policies.fleet import Fleet
from driftwarden.policies.loader import LoadedPolicy, PolicyLoadError
from driftwarden.policies.watch import PolicyWatcher

if TYPE_CHECKING:
    from driftwarden.daemon.partitions import Ownership

log = logging.getLogger("driftwarden.daemon")

REGISTRY_POLL_SECONDS = 1.0
"""How stale ``model.version`` may be after a change made outside this daemon (``driftwarden models promote``)."""
#: How often closing looks whether the actions ended, or a stop was asked for meanwhile.
STOP_POLL_SECONDS = 0.1
#: Of a stop's bound, kept for what follows the actions: the outbox, the sinks, the store, the exit.
STOP_RESERVE_SECONDS = 1.0

COALESCE_ROWS = 1024
"""Events a model collects before its pipeline runs while the source has more: a pipeline call costs
~50-100 µs whatever its size, and its snapshot, state row, parts and segment at the next checkpoint
~1-2 ms more, so 1,000 models sharing batches of 1,000 records would pay them per record. Waiting
rows cost no memory once a checkpoint stored them (they are read back when the model runs)."""
COALESCE_SHARE = 4
"""A model with at least 1/4 of a batch's events runs at once: the call's fixed cost is shared already (a
daemon of one or a few models never makes its events wait)."""
HELD_IN_MEMORY = 200_000
"""Waiting events in memory (decoded: ~180 MB at 20 features) at a checkpoint at most: past that, the
models with the most run until three quarters of this are left. With 1,000 models this bound, not
:data:`COALESCE_ROWS`, decides how many events a model collects (~200); reading stored rows back
instead costs ~2-4 µs an event, more than the calls it saves."""
COALESCE_CHECKPOINTS = 64
"""Checkpoints a model's events wait through at most (stored in each): with 1,000 models a checkpoint
of 20,000 records brings each ~20, and a model's call, snapshot and segment cost ~1-2 ms whatever the size."""

Listener = Callable[[dict[str, Any]], None]


@dataclass(slots=True)
class Held:
    """A model's events that wait for more (see :meth:`Daemon.process`): its rows in arrival order,
    how many of them (the first) the store holds, and the checkpoints they waited through. When
    ``spilled`` (restored at start), ``rows`` holds only those read since: the stored ones are read
    back from the store when the model runs."""

    rows: EventRows
    stored: int = 0
    checkpoints: int = 0
    spilled: bool = False

    def __len__(self) -> int:
        return self.stored + len(self.rows) if self.spilled else len(self.rows)

    def unstored(self) -> EventRows:
        """The rows the store does not hold yet."""
        return self.rows if self.spilled else self.rows.since(self.stored)


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
    admitted: int = 0
    """Models a fleet policy (``models:``) admitted as they first appeared in the stream."""
    ambiguous: int = 0
    """Events of models that two policies select equally specifically (not watched; also unrouted)."""
    batches: int = 0
    checkpoints: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=lambda: {"decode": 0.0, "monitors": 0.0, "checkpoint": 0.0})
    by_model: dict[str, dict[str, Any]] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    """The alerts' transitions (firing, resolved) of this run, in event order."""

    def summary(self) -> dict[str, Any]:
        return {
            "type": "summary",
            "records": self.records,
            "events": self.events,
            "dead_letters": self.dead_letters,
            "labels_joined": self.labels_joined,
            "signals": self.signals,
            "decisions": self.decisions,
            "unrouted": self.unrouted,
            "admitted": self.admitted,
            "ambiguous": self.ambiguous,
            "seconds": round(self.seconds, 3),
            "models": self.by_model,
            "alerts": {s: sum(1 for a in self.alerts if a["status"] == s) for s in ("firing", "resolved")},
        }


class Daemon:
    """The monitoring daemon over one source and a set of policies (one per model).

    >>> import tempfile, pathlib
    >>> from driftwarden.policies.loader import load_policy
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "p.yaml").write_text("version: 1\\nmodel: m\\nmonitors:\\n  e: {kind: adwin, series: error}\\n")
    >>> from driftwarden.daemon.io.sources import MemorySource
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
        watch_policies: bool = False,
    ) -> None:
        self.settings, self.source, self.listener, self.clock = settings, source, listener, clock
        self.fleet = Fleet(policies)  # which policy watches which model (policies/fleet.py)
        self.policies: dict[str, LoadedPolicy] = {}
        """model → its policy (a fleet policy bound to the model): the models with a pipeline."""
        # -- the HTTP face (daemon/http/): a snapshot after each batch, operators' commands between batches --
        self.publisher = Publisher()
        self.commands = Commands()
        # -- end HTTP face --
        self._stop = threading.Event()
        self._stop_asked = 0.0
        self._open_outputs(settings)
        self._ttl = parse_duration(settings.label_ttl)
        self._restored_index = self.checkpoint.next_index - 1
        self._open_models()
        self._open_actions(settings, synchronous_actions)
        self.fast_decode = True
        """Decode whole batches as columns (daemon/columnar.py); False forces the per-record path."""
        self._ticks: queue.Queue[tuple[str, str, float]] = queue.Queue()
        self._unrouted = Unrouted(settings.input.max_unknown_models)
        # Event time: records refused past a watermark (daemon/io/watermark.py), before decoding past a size.
        limits = settings.input
        self._guard = TimeGuard(
            parse_duration(limits.max_ahead), parse_duration(limits.max_behind) if limits.max_behind else None
        )
        self._guard.watermark = self.checkpoint.watermark  # the last checkpoint's, not the first batch's median
        self._watcher = PolicyWatcher.of(policies) if watch_policies else None
        self._audit: list[tuple[str | None, str, str | None, dict[str, Any]]] = []
        self._registry_reads: dict[str, tuple[float, bool]] = {}
        self._busy_models: set[str] = set()
        self._trim_heap = HeapTrimmer()
        self.stats = RunStats()
        self._attach_kafka(settings, source)
        self._resume(source)

    def _open_outputs(self, settings: Settings) -> None:
        """The state folder, the store, the sinks (JSONL files and the Kafka topics the settings name),
        the registry (staging left by a crash removed) and the checkpoint."""
        private_folder(settings.state_dir)  # private: raw events and state
        self.store = Store(settings.store_path)
        # The JSONL files, plus the Kafka topics that settings.sinks names (daemon/wiring.py).
        self.dead_letters, self.alerts, self.decisions, updates = build_sinks(
            settings, JsonlSink(settings.dead_letter_path), JsonlSink(settings.alerts_path), self._kafka_waiter
        )
        self.model_updates = ModelUpdates(updates, self._champion) if updates is not None else None
        self._rewind_sinks()
        for model, names in self.store.segments().items():  # before any buffer loads (and prunes) its files
            for seg in missing_segments(self._buffers(model), names):
                log.error(
                    "labeled-data segment %s of model %s is missing (deleted?): its %d rows are lost for retraining",
                    seg.path,
                    model,
                    seg.rows,
                )
        self.registry = open_registry(settings.registry_location)
        partials = self.registry.clean_staging() if isinstance(self.registry, LocalRegistry) else []
        for partial in partials:  # a registration killed mid-copy (50-70 MB each)
            log.warning("removed a partial model copy left by a crash: %s", partial)
        self.checkpoint = Checkpoint(
            self.store,
            self.source.commit,
            every_records=settings.checkpoint_records,
            every_seconds=settings.checkpoint_seconds,
        )

    def _kafka_waiter(self, bootstrap: str) -> Any:
        """How the Kafka outputs wait a broker outage out (daemon/io/kafka/outage.py ``Waiter``): they report to
        the source's outage when both use that broker (``/readyz`` says it), the snapshot is republished between
        tries (``/livez`` sees the loop turn) and a stop ends the wait (the checkpoint is then not written: the
        source replays from the last one)."""
        from driftwarden.daemon.io.kafka.outage import Outage, Waiter

        outage = getattr(self.source, "outage", None)
        if not isinstance(outage, Outage) or outage.bootstrap != bootstrap:
            outage = Outage(bootstrap)
        return Waiter(outage, self._stop, lambda: self._publish(force=True))

    def _open_models(self) -> None:
        """A pipeline for every model a policy names, and for every fleet model admitted before a restart."""
        self.pipelines: dict[str, ModelPipeline] = {}
        self._waiting: dict[str, Held] = {}
        """Models whose events wait for more (see :meth:`process`), in the order they began to wait."""
        self._cleared: set[str] = set()
        """Models whose waiting events the store holds, that ran since the last checkpoint."""
        self._admissions: dict[str, dict[str, Any]] = {}
        self._unroutable: set[str] = set()
        """Names no policy selects (bounded by ``input.max_unknown_models``): not routed again."""
        for model in self.fleet.eager():
            self._add_pipeline(model, self.fleet.route(model).policy)  # type: ignore[arg-type]
        for model, seen in self.store.admitted().items():  # fleet models admitted before a restart
            route = self.fleet.route(model, seen.get("attributes"))
            if model not in self.pipelines and route.policy is not None:
                self._add_pipeline(model, route.policy)
        self._restore_waiting()

    def _restore_waiting(self) -> None:
        """The events that waited at the last checkpoint (read past, not yet applied), as they waited:
        counted, read when their model runs (an entry of a version-3 store, which has no count, now)."""
        for model, stored in self.store.waiting_counts().items():
            if stored is None:
                stored = len(self._stored_rows(model))
            if model not in self.pipelines:  # its policy is gone since: nothing watches those events
                log.warning(
                    "model %s is no longer watched: %d of its events read before the restart are dropped",
                    model,
                    stored,
                )
                self._cleared.add(model)
                continue
            self._waiting[model] = Held(EventRows.empty(model), stored=stored, spilled=True)

    def _stored_rows(self, model: str) -> EventRows:
        """The waiting rows of ``model`` that the store holds."""
        rows = EventRows.empty(model)
        try:
            for blob in self.store.waiting_of(model):
                rows.extend(EventRows.loads(model, blob))
        except ValueError as e:
            raise StateCorrupt(self.store.path, f"the waiting events of model {model}: {e}") from None
        return rows

    def _open_actions(self, settings: Settings, synchronous: bool) -> None:
        """The action runner, the outbox of notifications and the evidence reports."""
        self.actions = ActionRunner(
            self.store,
            self.policies,
            self._training_data,
            settings.state_dir / "runs",
            self.registry,
            self.alerts,
            execute=settings.execute,
            synchronous=synchronous,
            listener=self._emit,
            base=settings.state_dir,
            position=lambda: self.checkpoint.next_index,
        )
        self.outbox = Outbox(self.store, settings.alerting) if settings.alerting and settings.execute else None
        """Delivers the alerts' notifications (Alertmanager, receivers); None without ``alerting:`` or
        when nothing is executed (replay)."""
        self._notes: list[Notification] = []
        alerting = settings.alerting
        self.evidence = (
            Evidence(settings.state_dir / "evidence", alerting.external_url)
            if self.outbox is not None and alerting is not None and alerting.evidence
            else None
        )
        """Evidently reports of the windows behind drift alerts (daemon/alerting/evidence.py)."""

    def _attach_kafka(self, settings: Settings, source: Source) -> None:
        """Kafka: partition ownership and state moves (daemon/partitions.py); backpressure for every source."""
        self.ownership: Ownership | None = None
        if rebalances(source):  # Kafka; imported here: other sources never load kafka-python
            from driftwarden.daemon.actions.handover import Handover
            from driftwarden.daemon.partitions import Ownership

            self.ownership = Ownership.attach(
                settings.source,
                source,
                self.checkpoint,
                self.store,
                models=self.policies,
                restore=self._restore_model,
                adopt=self._adopt_labeled,
                checkpoint_now=self.write_checkpoint,
                handover=Handover(self.actions, self.store),
                waiter=self._kafka_waiter,
            )
        self._failed = False
        self.flow = Flow(
            source,
            [
                running_actions(lambda: self.actions.running, settings.backpressure.max_running_actions),
                pending_outputs(
                    [self.dead_letters, self.alerts, self.decisions], settings.backpressure.max_pending_outputs
                ),
            ],
        )

    def _resume(self, source: Source) -> None:
        """Seek the source to the checkpoint, seed the HTTP snapshot, recover unfinished actions."""
        if self.checkpoint.positions:
            log.info(
                "resuming from checkpoint: positions %s, next event index %d",
                self.checkpoint.positions,
                self.checkpoint.next_index,
            )
            source.seek(self.checkpoint.positions)
        self.publisher.seed(self.pipelines, self.store.actions())
        own = self.ownership
        if own is not None and own.handover is not None:  # a model's actions come with its task, on assign
            self.actions.recover(only=lambda action: action.model not in own.home)
        else:
            self.actions.recover()
        if self.outbox is not None:
            self.outbox.start()

    def _rewind_sinks(self) -> None:
        """Cut the dead-letter file back to its length at the last checkpoint: the lines past it
        belong to records the source replays now (a crash or a full disk between the append and the
        checkpoint). A file first seen keeps what it holds."""
        marks = self.store.marks()
        for sink in (self.dead_letters.marked,):
            if sink is None:
                continue
            if sink.name not in marks:
                self.store.set_marks({sink.name: sink.mark()})
                continue
            cut = sink.rewind(marks[sink.name])
            if cut:
                log.warning(
                    "%s: removed %d line(s) of a batch that was never checkpointed; it is replayed", sink.path, cut
                )

    # -- control -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to stop after the current batch (SIGTERM/SIGINT do this); :meth:`close` then takes
        at most ``settings.stop_timeout`` from now, leaving running trainers to the next start."""
        if not self._stop.is_set():
            self._stop_asked = time.monotonic()
        self._stop.set()

    def tick(self, model: str, rule: str, now: float | None = None) -> None:
        """A scheduled rule's time came (called from the scheduler thread); ``model`` may name a
        fleet policy's file instead (every model it watches)."""
        self._ticks.put((model, rule, self.clock() if now is None else now))

    def close(self) -> None:
        self.publisher.stopped()
        while not self.actions.wait(timeout=STOP_POLL_SECONDS):  # a stop asked for meanwhile bounds the wait
            if self._stop.is_set():
                left = self._stop_asked + self.settings.stop_timeout - STOP_RESERVE_SECONDS - time.monotonic()
                self.actions.stop(max(left, 0.0))
                break
        if self.outbox is not None:
            self.outbox.stop()
        if self.evidence is not None:
            self.evidence.wait()
        if rebalances(self.source):  # Kafka: a graceful stop commits (on revoke), a failure stop never
            self.source.close(revoke=not self._failed)
        else:
            self.source.close()
        for sink in (self.dead_letters, self.alerts, self.decisions, self.model_updates and self.model_updates.sink):
            close = getattr(sink, "close", None)
            if close is not None:
                close()
        if self.ownership is not None and self.ownership.changelog is not None:
            self.ownership.changelog.close()
            if self.ownership.labeled is not None:
                self.ownership.labeled.close()
        self.store.close()

    def _emit(self, item: dict[str, Any]) -> None:
        self.publisher.observe(item)
        if self.model_updates is not None:
            self.model_updates.observe(item)
        if self.listener is not None:
            self.listener(item)

    def _champion(self, model: str) -> str | None:
        return self.registry.aliases(model).get(CHAMPION)

    def _pipeline(
        self,
        policy: LoadedPolicy,
        state: dict[str, Any] | None,
        pending: Mapping[str, list[tuple[Any, ...]]] | None,
        *,
        upto: int,
    ) -> ModelPipeline:
        """A model's pipeline, restored from ``state`` (and the join's unmatched halves ``pending``)
        when there is one; its labeled buffer keeps the rows up to event index ``upto``."""
        pipe = ModelPipeline(policy, self._buffers(policy.model), ttl=self._ttl, upto=upto)
        if state is not None:
            pipe.restore(state, pending)
        return pipe

    def _add_pipeline(self, model: str, policy: LoadedPolicy) -> ModelPipeline:
        """Start ``model``'s pipeline under ``policy`` (bound to the model), resuming its checkpointed
        state when there is one."""
        bound = self.fleet.bind(policy, model)
        state = self.store.pipeline_state(model)
        pending = self.store.pending(model) if state is not None else None
        # Rows buffered after the checkpoint this daemon started from are replayed: keep those before.
        pipe = self._pipeline(bound, state, pending, upto=self._restored_index)
        for monitor in pipe.engine.monitors.values():
            monitor.preload()
        self.policies[model] = bound
        self.pipelines[model] = pipe
        return pipe

    def _admit(self, model: str, rows: EventRows) -> EventRows | None:
        """A model first seen in the stream: give it a pipeline when a fleet policy selects it,
        and return its rows from the first one the policy admits (its ``where:`` may skip some)."""
        if model in self._unroutable:
            return None
        named = self.fleet.route(model)  # by name only
        if named.policy is None and not named.ambiguous:
            if len(self._unroutable) < self.settings.input.max_unknown_models:
                self._unroutable.add(model)
            return None
        start, route = 0, named
        if self.fleet.uses_where:
            found = next(
                (
                    (i, r)
                    for i, attributes in enumerate(rows.attributes)
                    if (r := self.fleet.route(model, attributes)).policy is not None or r.ambiguous
                ),
                None,
            )
            if found is None:
                return None  # no event of this batch matches a 'where:'; a later one may
            start, route = found
        if route.ambiguous or route.policy is None:
            self.stats.ambiguous += len(rows) - start
            if model not in self._unroutable:
                log.error("model %r is not watched: %s", model, route.reason)
            if not self.fleet.uses_where and len(self._unroutable) < self.settings.input.max_unknown_models:
                self._unroutable.add(model)
            return None
        self._add_pipeline(model, route.policy)
        attributes = rows.attributes[start] if self.fleet.uses_where else None
        self._admissions[model] = {"policy": str(route.policy.path), "pattern": route.pattern, "attributes": attributes}
        self.stats.admitted += 1
        log.info(
            "model %r first seen at event %d: watched by policy %s (selected by %r)",
            model,
            rows.index[start],
            route.policy.path,
            route.pattern,
        )
        return rows.since(start)

    def _buffers(self, model: str) -> Path:
        return self.settings.state_dir / "buffers" / model

    def _restore_model(self, model: str, state: dict[str, Any], next_index: int, local: bool) -> bool:
        """Kafka ownership moved ``model``'s task here (see daemon/partitions.py: ``Restore``)."""
        policy = self.policies.get(model)
        if policy is None:  # a fleet model first seen by another owner: route it by this daemon's policies
            seen = self.store.admitted().get(model, {})
            route = self.fleet.route(model, seen.get("attributes"))
            if route.policy is None:
                return False
            policy = self.fleet.bind(route.policy, model)
            self.policies[model] = policy
        if not local:
            shutil.rmtree(self._buffers(model), ignore_errors=True)  # another owner's rows since: ours are stale
        pending = self.store.pending(model) if local else None
        self.pipelines[model] = self._pipeline(policy, state, pending, upto=next_index - 1)
        return True

    def _adopt_labeled(self, model: str, docs: list[bytes]) -> int:
        """The previous owners' labeled rows of a restored ``model``, from the labeled-data log (partitions.py)."""
        return self.pipelines[model].buffer.adopt(docs)

    # -- the loop ------------------------------------------------------------------------------

    def run(self, count: int | None = None, timeout: float | None = None) -> RunStats:
        """Process until the source is exhausted, ``count`` records were read, ``timeout`` seconds
        passed, or :meth:`stop` was called; return the counts. An exception makes it a failure
        stop: :meth:`close` then commits nothing."""
        try:
            return self._run(count, timeout)
        except BaseException:
            self._failed = True
            raise

    def _run(self, count: int | None, timeout: float | None) -> RunStats:
        # Everything alive now (imports, policies, restored state) lives as long as the process:
        # keep it out of the cyclic collector's full passes, which otherwise cost a fifth of the loop.
        gc.freeze()
        # A batch makes ~1 MB of short-lived objects: the default threshold (700) runs the young
        # collection every few hundred records, a fifth of a microsecond per record.
        gc.set_threshold(20_000, 10, 10)
        started = time.monotonic()
        read = 0
        while not self._stop.is_set():
            self.commands.run(self)
            self._publish()
            self._drain_ticks()
            self.reload_policies()
            if count is not None and read >= count:
                break
            if timeout is not None and time.monotonic() - started >= timeout:
                break
            if self.source.exhausted:
                break
            want = self.settings.batch_size if count is None else min(self.settings.batch_size, count - read)
            records = self.flow.poll(want, self.settings.poll_timeout)
            if not records:
                self._observe_busy_models()  # a deploy on an idle stream still shows its new champion
                if self.checkpoint.unwritten and self.checkpoint.due():
                    self.write_checkpoint()  # an idle stream still gets its progress written within checkpoint_seconds
                continue
            read += len(records)
            self.process(records, caught_up=len(records) < want)
        self._drain_ticks()
        if self.checkpoint.unwritten or self._waiting:
            self.write_checkpoint()  # with every waiting event run: a run returns with all it read applied
        self._publish(force=True)
        self.stats.seconds += time.monotonic() - started
        self.stats.by_model = {m: p.stats() for m, p in self.pipelines.items()}
        return self.stats

    def process(self, records: Sequence[Record], *, caught_up: bool = True) -> None:
        """One micro-batch, in the order the module docstring gives. ``caught_up=False`` (the poll
        was full: the source has more) lets a model with fewer than :data:`COALESCE_ROWS` events
        wait for more, through at most :data:`COALESCE_CHECKPOINTS` checkpoints (which store the
        waiting events: the positions are past them); decisions do not depend on how a model's
        events are cut into batches (the golden replay is the same for every batch size)."""
        self.stats.records += len(records)
        fresh, first = self.checkpoint.apply(records)
        if not fresh:
            return
        started = time.perf_counter()
        batch = decode_batch(
            fresh,
            first_index=first,
            arrival=self.clock(),
            fast=self.fast_decode,
            max_bytes=self.settings.input.max_record_bytes,
            guard=self._guard,
        )
        dead = batch.dead
        by_model: dict[str, EventRows] = {}
        for model, rows in batch.by_model.items():
            if model in self.pipelines:
                by_model[model] = rows
                continue
            admitted = self._admit(model, rows)
            if admitted is not None:
                by_model[model] = admitted
            skipped = len(rows) - (0 if admitted is None else len(admitted))
            if skipped:
                self.stats.unrouted += skipped
                if model not in self.pipelines:
                    self._unrouted.add(model, skipped)
        if self._admissions:
            self.store.admit(self._admissions)
            self._admissions = {}
        if self.ownership is not None:
            self.ownership.routed(fresh, first, by_model)
        # Everything waits no longer when the stream is caught up, or a dead letter or a schedule
        # changes what every engine counts; with Kafka (whose changelog carries whole states) also
        # when a checkpoint is due.
        flush = caught_up or bool(dead) or not self._ticks.empty()
        flush = flush or (self.ownership is not None and self.checkpoint.due())
        ready = self._coalesce(by_model, flush=flush)
        self.stats.events += batch.events
        self._apply(ready, dead, fresh, first, started)

    def _coalesce(self, by_model: dict[str, EventRows], *, flush: bool) -> dict[str, EventRows | None]:
        """The models to run now with their rows, or None for a waiting model's (taken as it runs: rows
        read back from the store are in memory one model at a time); the others wait."""
        waiting = self._waiting
        if not waiting and flush:
            return dict(by_model)
        ready: dict[str, EventRows | None] = {}
        # A large share of the batch, or a rollout that waits for live rows, runs now.
        large = sum(len(rows) for rows in by_model.values()) / COALESCE_SHARE
        watched = self.actions.watching_models
        for model, rows in by_model.items():
            held = waiting.get(model)
            if held is None:
                if flush or len(rows) >= min(COALESCE_ROWS, large) or model in watched:
                    ready[model] = rows
                else:
                    waiting[model] = held = Held(EventRows.empty(model))  # its own lists: extended in place
                    held.rows.extend(rows)
                continue
            held.rows.extend(rows)
            if flush or len(held) >= COALESCE_ROWS or model in watched:
                ready[model] = None
        if flush:
            ready.update(dict.fromkeys(waiting))  # after the models above (kept where they are)
        return ready

    def _take(self, model: str) -> EventRows:
        """A waiting model's rows, those the store holds read back first (it waits no longer)."""
        held = self._waiting.pop(model)
        if held.stored:
            self._cleared.add(model)
        if not held.spilled:
            return held.rows
        rows = self._stored_rows(model)
        if len(rows) != held.stored:
            raise StateCorrupt(
                self.store.path, f"the waiting events of model {model}: {len(rows)} stored, {held.stored} counted"
            )
        rows.extend(held.rows)
        return rows

    def _catch_up(self, models: Sequence[str] | None = None) -> None:
        """Run the models whose events wait (all, or ``models``), in the order they began to wait."""
        chosen = None if models is None else set(models)
        names = [m for m in self._waiting if chosen is None or m in chosen]
        self._apply(dict.fromkeys(names), [], [], 0, time.perf_counter())

    def _waiting_delta(self) -> WaitingDelta:
        """For the checkpoint: the waiting rows the store does not hold yet, and the models whose
        stored rows ran. Rows that have no JSON form (a time that is not finite) run now instead."""
        added: dict[str, tuple[int, bytes]] = {}
        unstorable: list[str] = []
        for model, held in self._waiting.items():
            rows = held.unstored()
            if len(rows):
                try:
                    added[model] = (len(rows), rows.dumps())
                except (ValueError, TypeError):
                    unstorable.append(model)
        if unstorable:
            self._catch_up(unstorable)
            return self._waiting_delta()  # a checkpoint their decisions made may have stored the others
        return WaitingDelta(added, set(self._cleared))

    def _apply(
        self,
        by_model: Mapping[str, EventRows | None],
        dead: Sequence[Any],
        fresh: Sequence[Record],
        first: int,
        started: float,
    ) -> None:
        """Run the pipelines over their rows, write the dead letters, checkpoint when decisions,
        alerts or due-ness ask, then emit the outputs and hand the new intents to the actions."""
        decoded = time.perf_counter()
        outputs: list[dict[str, Any]] = []
        decisions: list[Decision] = []
        for model, model_events in by_model.items():
            if model_events is None:  # a waiting model: its rows now
                model_events = self._take(model)
            pipe = self.pipelines[model]
            self._observe(model)
            joined_before = pipe.joiner.joined
            signals, model_decisions = pipe.process(model_events)
            self.stats.labels_joined += pipe.joiner.joined - joined_before
            outputs += signals
            decisions += model_decisions
            notes = pipe.alerts.drain()
            if notes and self.evidence is not None:
                notes = self.evidence.attach(notes, self._training_data, self._reference)
            self._notes += notes
        for d in dead:
            self.dead_letters.write({**d.as_dict(), "code": d.code, "raw": d.raw, "key": fresh[d.index - first].key})
            outputs.append({"type": "dead_letter", "model": None, "at": d.index, **d.as_dict()})
        if dead:  # a model's own count holds the bad records naming it; every policy sees the stream's
            named = Counter(d.model for d in dead)
            for model, pipe in self.pipelines.items():
                pipe.engine.dead_letters += named.get(model, 0)
                pipe.engine.stream_dead_letters += len(dead)
                pipe.dirty = True
        monitored = time.perf_counter()
        decisions.sort(key=lambda d: (d.at, d.model, d.rule))
        self._audit += [
            (o.get("model"), o["type"], None, o) for o in outputs if o["type"] == "signal" and o.get("drift")
        ]
        new: list[str] = []
        alerts = [n.as_dict() for n in self._notes]
        if decisions or self._notes or self.checkpoint.due():
            new = self.write_checkpoint(decisions, catch_up=False)
        self.stats.timings["decode"] += decoded - started
        self.stats.timings["monitors"] += monitored - decoded
        self.stats.timings["checkpoint"] += time.perf_counter() - monitored
        self.stats.dead_letters += len(dead)
        self.stats.signals += sum(1 for o in outputs if o["type"] == "signal")
        self.stats.decisions += len(decisions)
        self.stats.batches += 1
        outputs += [{"type": "decision", **d.as_dict()} for d in decisions]
        outputs += alerts
        self.stats.alerts += alerts
        outputs.sort(key=lambda o: (o["at"], _ORDER[o["type"]]))
        for o in outputs:
            self._emit(o)
        self.actions.submit(new)

    def _publish(self, force: bool = False) -> None:
        """The HTTP face's hook: an immutable snapshot of the loop's state for the server thread,
        swapped in after a batch (daemon/http/snapshot.py; no lock held across a batch)."""
        self.publisher.publish(self, self.checkpoint.positions, self.checkpoint.next_index, force=force)

    def write_checkpoint(self, decisions: Sequence[Decision] = (), *, catch_up: bool = True) -> list[str]:
        """Write the decisions to their topic, then a checkpoint in the order of
        :class:`~driftwarden.daemon.checkpoint.Checkpoint`. Returns the keys of the new intents.
        The positions are past the waiting events: ``catch_up`` (always with Kafka, whose changelog
        moves whole states) runs them first; else the checkpoint stores them, and runs those that
        waited through :data:`COALESCE_CHECKPOINTS` checkpoints."""
        if catch_up or self.ownership is not None:
            if self._waiting:
                self._catch_up()
        else:
            overdue = [m for m, held in self._waiting.items() if held.checkpoints + 1 >= COALESCE_CHECKPOINTS]
            overdue += [m for m in self._over_budget() if m not in overdue]
            if overdue:
                self._catch_up(overdue)
        waiting = self._waiting_delta()
        sinks: list[Any] = []
        if self.decisions is not None:  # the decisions topic: at least once, keyed for deduplication
            for d in decisions:
                self.decisions.write({"type": "decision", **d.as_dict()})
            sinks.append(self.decisions)
        sinks.append(self.dead_letters)
        sinks += [pipe.buffer for pipe in self.pipelines.values()]
        intents = [Intent(d.key, d.model, d.rule, d.action, d.action_type, d.at, d.ts, d.as_dict()) for d in decisions]
        audit = self._audit + [(d.model, "decision", d.key, d.as_dict()) for d in decisions]
        notes, self._notes = self._notes, []
        outbox = self.outbox.rows(notes) if self.outbox is not None else []
        self.checkpoint.watermark = self._guard.watermark
        own = self.ownership
        if own is not None and own.changelog is not None:  # store, changelog, then commit: whole states
            if own.labeled is not None:  # the labeled rows since the last checkpoint, to their task's partition
                own.ship_labeled({m: p.buffer.pending_docs() for m, p in self._saved()})
            snapshots = self._snapshots()
            new = self.checkpoint.write(
                snapshots,
                intents,
                audit,
                sinks=sinks,
                after_store=lambda: own.checkpointed(snapshots),
                outbox=outbox,
                waiting=waiting,
            )
        else:  # the models that changed, one state in memory at a time; of the join's halves, what changed
            saved = [(m, p) for m, p in self._saved() if p.dirty]
            deltas = {m: p.joiner.pending_delta() for m, p in saved}
            states = ((m, self._state(m, p, pending=False)) for m, p in saved)

            def written() -> None:
                for m, delta in deltas.items():
                    self.pipelines[m].joiner.written(delta)
                for _, p in saved:
                    p.dirty = False

            new = self.checkpoint.write(
                states, intents, audit, deltas, sinks=sinks, after_store=written, outbox=outbox, waiting=waiting
            )
        self._held_stored()
        self._cleared -= set(waiting.cleared)
        if outbox and self.outbox is not None:
            self.outbox.wake()
        self._audit = []
        self.stats.checkpoints += 1
        self._trim_heap()  # the states just written were the checkpoint's big temporaries
        return new

    def _held_stored(self) -> None:
        """After a checkpoint: the store holds every waiting row now (a spilled model's only there)."""
        for model, held in self._waiting.items():
            held.stored = len(held)
            held.checkpoints += 1
            if held.spilled:
                held.rows = EventRows.empty(model)

    def _over_budget(self) -> list[str]:
        """The models to run so that the waiting events in memory are within :data:`HELD_IN_MEMORY`:
        none while they are, else those with the most until three quarters of it are left."""
        held = self._waiting
        in_memory = sum(len(h.rows) for h in held.values())
        if in_memory <= HELD_IN_MEMORY:
            return []
        out = []
        for model in sorted(held, key=lambda m: len(held[m].rows), reverse=True):
            if in_memory <= HELD_IN_MEMORY * 3 // 4:
                break
            out.append(model)
            in_memory -= len(held[model].rows)
        return out

    def _saved(self) -> list[tuple[str, ModelPipeline]]:
        """The pipelines a checkpoint saves: all, or with Kafka those of the owned models."""
        return [(m, p) for m, p in self.pipelines.items() if self.ownership is None or self.ownership.owns(m)]

    def _snapshots(self) -> dict[str, Any]:
        """The whole states of the saved models, for the store and the changelog (which carries
        them, unmatched join halves included, to the next owner)."""
        return {m: self._state(m, p, pending=True) for m, p in self._saved()}

    def _state(self, model: str, pipe: ModelPipeline, *, pending: bool) -> dict[str, Any]:
        """A model's state, with its task (partition number) under Kafka; without the join's
        unmatched halves when the store's pending log keeps them."""
        state = pipe.snapshot(pending)
        if self.ownership is not None:
            state["task"] = self.ownership.home.get(model)
            ranges = self.ownership.ranges_of(model)
            if ranges is not None:
                state["labeled"] = ranges
        return state

    def _observe_busy_models(self) -> None:
        """Read the registry for the models with an action in flight, and for those whose action just
        ended: their champion may have moved while no event of theirs arrived."""
        busy = self.actions.busy_models
        for model in (busy | self._busy_models) & self.pipelines.keys():
            self._observe(model)
        self._busy_models = busy

    def _observe(self, model: str) -> None:
        """Tell a policy engine what the events do not: the version in production (``model.version``,
        ``model.age``: since its registration). (Inhibition is in event time: the engine's own.)"""
        engine = self.pipelines[model].engine
        busy = model in self.actions.busy_models
        # The registry is read again once a second, and at once when an action of this model ends.
        now = time.monotonic()
        last = self._registry_reads.get(model)
        if last is not None and now - last[0] < REGISTRY_POLL_SECONDS and last[1] == busy:
            return
        self._registry_reads[model] = (now, busy)
        try:
            version = self.registry.aliases(model).get(CHAMPION, "")
            if version != engine.deployed[0]:
                created = self.registry.get(model, version).metadata.get("created") if version else None
                engine.set_deployed(version, dt.datetime.fromisoformat(created).timestamp() if created else None)
        except (OSError, ValueError, KeyError) as e:
            log.warning("cannot read the registry for model %s: %s", model, e)

    def reload_policies(self) -> None:
        """Swap in policy files that changed (between batches, so atomically for the loop); refuse
        invalid ones with their errors logged, keeping the running policy. Monitors whose definition
        is unchanged keep their state. A fleet policy's change reaches every model it watches; a
        change that would move a watched model to another policy (or none) is refused. Changed
        ``schedule:`` rules take effect at restart."""
        if self._watcher is None:
            return
        for change in self._watcher.changes():
            old = next((p for p in self.fleet.policies if p.path == change.path), None)
            models = [m for m, p in self.policies.items() if p.path == change.path]
            label = old.model if old is not None and old.spec.model is not None else ", ".join(models) or None
            new = change.policy
            errors = [str(e) for e in change.errors]
            fleet = None
            if new is not None and old is not None and not errors:
                if old.spec.model is not None and new.spec.model != old.spec.model:
                    errors = [
                        f"{change.path}:1:1: model: the file now watches {new.spec.model or new.spec.models!r}, "
                        f"not {old.model!r}; restart the daemon to change a policy's model"
                    ]
                else:
                    try:
                        fleet = Fleet([new if p is old else p for p in self.fleet.policies])
                    except PolicyLoadError as e:
                        errors = [str(x) for x in e.errors]
                    else:
                        admitted = self.store.admitted()
                        moved = [
                            m for m in models if fleet.route(m, admitted.get(m, {}).get("attributes")).policy is not new
                        ]
                        if moved:
                            errors = [
                                f"{change.path}:1:1: models: the file no longer watches {', '.join(moved)}; "
                                "restart the daemon to change the models a policy selects"
                            ]
            if old is None or new is None or fleet is None or errors:
                self._refused(change.path, label, errors)
                continue
            if self.checkpoint.unwritten or self._waiting:
                self.write_checkpoint()  # the old policy's work is on disk before the new one runs
            try:
                kept = {m: self.pipelines[m].swap(fleet.bind(new, m)) for m in models}
            except Exception as e:  # noqa: BLE001 - e.g. unreadable reference data: keep the running policy
                self._refused(change.path, label, [f"{type(e).__name__}: {e}"])
                continue
            self.fleet = fleet
            self._unroutable.clear()  # a model no policy selected may be selected now
            for m in models:
                self.policies[m] = self.pipelines[m].policy
                log.info(
                    "policy %s reloaded for model %s; monitors that kept their state: %s",
                    change.path,
                    m,
                    ", ".join(kept[m]) or "none",
                )
                self._emit(
                    {
                        "type": "policy",
                        "model": m,
                        "at": None,
                        "ts": None,
                        "state": "reloaded",
                        "path": str(change.path),
                        "digest": new.digest,
                        "kept": kept[m],
                    }
                )

    def _refused(self, path: Path, model: str | None, errors: list[str]) -> None:
        log.error("policy %s refused; model %s keeps running the previous one:\n%s", path, model, "\n".join(errors))
        self._emit(
            {
                "type": "policy",
                "model": model,
                "at": None,
                "ts": None,
                "state": "refused",
                "path": str(path),
                "errors": errors,
            }
        )

    def _drain_ticks(self) -> None:
        decisions = []
        while True:
            try:
                model, rule, now = self._ticks.get_nowait()
            except queue.Empty:
                break
            targets = (
                [model] if model in self.pipelines else [m for m, p in self.policies.items() if str(p.path) == model]
            )
            for target in targets:  # a fleet policy's tick names its file: every model it watches
                self._observe(target)
                self.pipelines[target].dirty = True
                d = self.pipelines[target].engine.scheduled(rule, now, at=max(self.checkpoint.next_index - 1, 0))
                if d is not None:
                    decisions.append(d)
        if decisions:
            self.decide(decisions)

    def decide(self, decisions: list[Decision]) -> None:
        """Record and run decisions made outside the event stream (schedules, operators): checkpoint
        them as intents, then hand the new ones to the action runner (loop thread only)."""
        new = self.write_checkpoint(decisions)
        self.stats.decisions += len(decisions)
        for d in decisions:
            self._emit({"type": "decision", **d.as_dict()})
        self.actions.submit(new)

    def _reference(self, model: str) -> Any:
        """The policy's reference data as columns, or None (for evidence reports)."""
        from driftwarden.policies.engine import load_reference

        return load_reference(self.policies[model])

    def _training_data(self, model: str, upto: int, last: int) -> Any:
        """Features, ``__label``, the row's ``__id``/``__ts``/``__index`` and its ``__attr_*`` attributes
        (for the gate's fairness check; the lifecycle never passes attributes to a trainer)."""
        frame = self.pipelines[model].buffer.frame(upto=upto, last=last)
        keep = [
            c
            for c in frame.columns
            if not str(c).startswith("__") or c in TRAINING_META or str(c).startswith("__attr_")
        ]
        return frame[keep]


TRAINING_META = ("__label", "__id", "__ts", "__index")

_ORDER = {"dead_letter": 0, "signal": 1, "decision": 2, "alert": 3, "action": 3}
