"""Everything the daemon keeps for one model: label join, column types, labeled buffer and policy engine."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from itertools import compress
from pathlib import Path
from typing import Any

from driftwarden.daemon.alerting.alerts import AlertBook, specs_of
from driftwarden.daemon.io.events import Event, EventRows
from driftwarden.daemon.state.column_types import ColumnTypes
from driftwarden.daemon.state.label_join import DEFAULT_TTL, LabeledRows, LabelJoiner
from driftwarden.daemon.state.labeled_buffer import DEFAULT_MAX_ROWS, LabeledBuffer
from driftwarden.detectors.base import Batch
from driftwarden.policies.engine import Decision, PolicyEngine, load_reference
from driftwarden.policies.loader import LoadedPolicy


class ModelPipeline:
    """Events of one model in, signals and decisions out.

    >>> import tempfile, pathlib
    >>> from driftwarden.policies.loader import load_policy
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "p.yaml").write_text("version: 1\\nmodel: m\\nmonitors:\\n  e: {kind: adwin, series: error}\\n")
    >>> p = ModelPipeline(load_policy(d / "p.yaml"), d / "buf")
    >>> _ = p.process([Event("m", "1", 0, 0.0, "prediction", features={"x": 1.0}, prediction=1),
    ...                Event("m", "1", 1, 1.0, "label", label=0)])
    >>> p.joiner.joined, len(p.buffer), p.engine.events, p.engine.labels
    (1, 1, 1, 1)
    """

    def __init__(
        self, policy: LoadedPolicy, buffer_dir: Path, *, ttl: float = DEFAULT_TTL, upto: int | None = None
    ) -> None:
        self.policy = policy
        self.model = policy.model
        max_rows = max([DEFAULT_MAX_ROWS, *(a.data.last for a in policy.spec.actions.values())])
        self.types = ColumnTypes()
        self.joiner = LabelJoiner(ttl=ttl, duplicates=policy.spec.join.duplicates)
        self.buffer = LabeledBuffer(buffer_dir, max_rows=max_rows, upto=upto)
        self.engine = PolicyEngine(policy, reference=load_reference(policy))
        self.alerts = AlertBook(self.model, specs_of(policy))
        """The alerts of the rules that notify, following every evaluation of the engine."""
        self.engine.observer = self.alerts.evaluated
        self.timings = {"join": 0.0, "columns": 0.0, "monitors+rules": 0.0}
        self.dirty = True
        """The state changed since it was last checkpointed (the daemon clears it after a write):
        a model without events since costs a checkpoint nothing."""

    def process(self, events: EventRows | Sequence[Event]) -> tuple[list[dict[str, Any]], list[Decision]]:
        """Join, buffer, build columns and run the policy engine over one batch of this model's events."""
        rows = events if isinstance(events, EventRows) else EventRows.from_events(self.model, events)
        self.dirty = True
        started = time.perf_counter()
        joined = self.joiner.add_rows(rows)
        if len(rows):
            self.joiner.expire(now=max(rows.ts))
        self.buffer.extend(joined)
        joined_at = time.perf_counter()
        batches = self._predictions(rows), self._labeled(joined)
        columns_at = time.perf_counter()
        if self.alerts.specs:
            self.alerts.begin(rows.index, rows.ts)
        out = self.engine.process(*batches)
        if self.alerts.specs:
            self.alerts.end()
        self.timings["join"] += joined_at - started
        self.timings["columns"] += columns_at - joined_at
        self.timings["monitors+rules"] += time.perf_counter() - columns_at
        return out

    def _predictions(self, rows: EventRows) -> Batch | None:
        """The batch of the rows of kind ``prediction``: only the columns it reads are selected (a pass
        over cold rows per column)."""
        mask = rows.is_prediction
        if not any(mask):
            return None
        index, ts, features, attributes, prediction, score = (
            rows.index,
            rows.ts,
            rows.features,
            rows.attributes,
            rows.prediction,
            rows.score,
        )
        if not all(mask):
            index, ts = list(compress(index, mask)), list(compress(ts, mask))
            features, attributes = list(compress(features, mask)), list(compress(attributes, mask))
            prediction, score = list(compress(prediction, mask)), list(compress(score, mask))
        return self.types.batch(index, ts, features, attributes, prediction, score, None)

    def _labeled(self, pairs: LabeledRows) -> Batch | None:
        if not len(pairs):
            return None
        return self.types.batch(
            pairs.index,
            pairs.ts,
            pairs.features,
            pairs.attributes,
            pairs.prediction,
            pairs.score,
            pairs.label,
            lazy=True,
        )

    def snapshot(self, pending: bool = True) -> dict[str, Any]:
        """The state to checkpoint; ``pending=False`` leaves out the join's unmatched halves, which
        the store then keeps through ``joiner.pending_delta()``."""
        return {
            "digest": self.policy.digest,
            "types": self.types.snapshot(),
            "joiner": self.joiner.snapshot(pending),
            "engine": self.engine.snapshot(),
            "alerts": self.alerts.snapshot(),
            "buffer_last_index": self.buffer.last_index,
        }

    def restore(self, state: dict[str, Any], pending: Mapping[str, list[tuple[Any, ...]]] | None = None) -> None:
        """Resume from :meth:`snapshot` output; ``pending`` gives the join's unmatched halves per side
        (``predictions``, ``labels``) when the snapshot was taken without them."""
        self.types.restore(state["types"])
        self.joiner.restore(state["joiner"])
        if "predictions" not in state["joiner"]:
            held = pending or {}
            self.joiner.restore_pending(list(held.get("predictions", [])), list(held.get("labels", [])))
        self.engine.restore(state["engine"])
        self.alerts.restore(state.get("alerts", {}))

    def swap(self, policy: LoadedPolicy) -> list[str]:
        """Run ``policy`` from now on (hot reload). Joins, column types and buffered data stay; the
        new engine resumes every monitor whose definition is unchanged (returned) and the counters."""
        engine = PolicyEngine(policy, reference=load_reference(policy))
        kept = engine.restore(self.engine.snapshot())
        engine.deployed, engine.silenced = self.engine.deployed, self.engine.silenced
        alerts = self.alerts.successor(specs_of(policy))
        engine.observer = alerts.evaluated
        self.policy, self.engine, self.alerts = policy, engine, alerts
        self.dirty = True
        return kept

    def stats(self) -> dict[str, Any]:
        return {
            "events": self.engine.events,
            "labels_joined": self.joiner.joined,
            "pending": self.joiner.pending,
            "expired": dict(self.joiner.expired),
            "duplicates": dict(self.joiner.duplicates),
            "buffered": len(self.buffer),
            "type_violations": dict(self.types.violations),
            "condition_errors": self.engine.condition_errors,
            "alerts": {**self.alerts.sent, "firing_now": len(self.alerts.active)},
        }
