"""``/metrics``: Prometheus metric families built from the published :class:`Snapshot`.

A custom collector (prometheus-client's ``collect()`` protocol) turns the snapshot into metric
families at scrape time, so the loop pays nothing between scrapes. :data:`METRICS` is the
catalogue: the collector emits only what it lists, and docs/operating.md's table is generated
from it (tests/http/test_docs.py keeps the two in sync).

Label values are bounded: model, monitor, rule, feature come from the policies; partition from
the topics; ``reason``, ``state`` and ``type`` from fixed sets; fairness groups are capped at
:data:`MAX_GROUPS` per monitor.

>>> from prometheus_client import generate_latest
>>> registry = metrics_registry(lambda: None)
>>> b"driftwarden_up 0.0" in generate_latest(registry)
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from driftwarden.daemon.http.snapshot import Histogram, Snapshot
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

MAX_GROUPS = 50
"""Fairness groups exported per monitor (the largest first): keeps the series count bounded."""

RULE_STATES = ("inactive", "pending", "firing")

INFO_VALUES = ("version",)
"""Labels an info metric carries as its value (``driftwarden_build_info{version="..."} 1``)."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    """The exposed name (with ``_total`` for counters, ``_info`` for info metrics)."""
    type: str
    labels: tuple[str, ...]
    help: str


def _m(name: str, type_: str, labels: str, help_: str) -> MetricSpec:
    return MetricSpec(name, type_, tuple(labels.split()), help_)


METRICS: tuple[MetricSpec, ...] = (
    _m("driftwarden_up", "gauge", "", "1 while the loop runs and has published a snapshot."),
    _m("driftwarden_build_info", "info", "version", "The driftwarden version serving."),
    _m("driftwarden_start_time_seconds", "gauge", "", "When this daemon started (epoch seconds)."),
    _m("driftwarden_last_progress_timestamp_seconds", "gauge", "", "When the loop last read records."),
    _m("driftwarden_records_total", "counter", "", "Records read from the source."),
    _m("driftwarden_events_total", "counter", "model", "Events accepted, by model."),
    _m("driftwarden_dead_letters_total", "counter", "reason", "Records that did not decode or validate."),
    _m("driftwarden_unrouted_events_total", "counter", "", "Events of models without a policy."),
    _m("driftwarden_labels_joined_total", "counter", "model", "Predictions joined with their label."),
    _m("driftwarden_join_expired_total", "counter", "model side", "Unmatched halves dropped after the TTL."),
    _m("driftwarden_join_pending", "gauge", "model side", "Unmatched halves waiting for their other half."),
    _m("driftwarden_batch_duration_seconds", "histogram", "", "Time to process one micro-batch."),
    _m("driftwarden_checkpoint_duration_seconds", "histogram", "", "Time to write one checkpoint."),
    _m("driftwarden_checkpoints_total", "counter", "", "Checkpoints written."),
    _m("driftwarden_last_checkpoint_timestamp_seconds", "gauge", "", "When the last checkpoint was written."),
    _m("driftwarden_source_reachable", "gauge", "", "1 when the source answers (file present, broker connected)."),
    _m("driftwarden_paused", "gauge", "", "1 while backpressure pauses ingestion."),
    _m("driftwarden_source_position", "gauge", "partition", "Next offset (line) to read, per partition."),
    _m("driftwarden_kafka_consumer_lag", "gauge", "partition", "Messages behind the partition's end."),
    _m("driftwarden_kafka_partition_owned", "gauge", "partition", "1 for each Kafka partition this daemon owns."),
    _m("driftwarden_monitor_value", "gauge", "model monitor", "The monitor's statistic at its last signal."),
    _m("driftwarden_monitor_threshold", "gauge", "model monitor", "What the statistic is compared with."),
    _m("driftwarden_monitor_p_value", "gauge", "model monitor", "The p-value of the last signal, if any."),
    _m("driftwarden_monitor_drift", "gauge", "model monitor", "1 when the last signal said drift."),
    _m("driftwarden_monitor_window_fill_ratio", "gauge", "model monitor", "Share of the open window collected."),
    _m("driftwarden_monitor_last_signal_timestamp_seconds", "gauge", "model monitor", "When the last signal came."),
    _m("driftwarden_monitor_signals_total", "counter", "model monitor", "Signals since this daemon started."),
    _m("driftwarden_feature_statistic", "gauge", "model monitor feature", "Per-feature drift statistic."),
    _m("driftwarden_feature_p_value", "gauge", "model monitor feature", "Per-feature drift p-value."),
    _m("driftwarden_feature_drift", "gauge", "model monitor feature", "1 when the feature drifted."),
    _m("driftwarden_fairness_group_rate", "gauge", "model monitor group", "Per-group rate of a fairness monitor."),
    _m("driftwarden_fairness_interval_low", "gauge", "model monitor", "Lower confidence bound of the statistic."),
    _m("driftwarden_fairness_interval_high", "gauge", "model monitor", "Upper confidence bound of the statistic."),
    _m("driftwarden_rule_state", "gauge", "model rule state", "1 for the rule's state: inactive, pending, firing."),
    _m("driftwarden_rule_silenced", "gauge", "model rule", "1 while an operator's silence mutes the rule."),
    _m("driftwarden_decisions_total", "counter", "model rule", "Decisions since this daemon started."),
    _m("driftwarden_actions_total", "counter", "type state", "Actions that ended, by type and final state."),
    _m("driftwarden_actions_running", "gauge", "", "Actions running now (retrains, verifications)."),
    _m("driftwarden_model_champion_info", "info", "model version", "The champion version serving each model."),
    _m("driftwarden_alerts_firing", "gauge", "model", "Alerts firing now (daemon/alerting)."),
    _m("driftwarden_notifications_total", "counter", "state", "Notifications delivered or failed for good."),
    _m("driftwarden_notifications_pending", "gauge", "", "Notifications in the outbox waiting for delivery."),
    _m("driftwarden_notification_retries_total", "counter", "", "Delivery tries that failed and were rescheduled."),
    _m("driftwarden_alerts_dropped_total", "counter", "", "Firing alerts dropped from the bounded resend set."),
)
SPECS = {s.name: s for s in METRICS}


START = "<!-- metrics table: generated by `python -m driftwarden.daemon.http.metrics --write docs/operating.md` -->"
END = "<!-- end of the metrics table -->"


def markdown_table() -> str:
    """The catalogue as the Markdown table of docs/operating.md.

    >>> markdown_table().splitlines()[2]
    '| `driftwarden_up` | gauge |  | 1 while the loop runs and has published a snapshot. |'
    """
    rows = ["| metric | type | labels | what |", "|---|---|---|---|"]
    for m in METRICS:
        labels = ", ".join(f"`{label}`" for label in m.labels)
        rows.append(f"| `{m.name}` | {m.type} | {labels} | {m.help} |")
    return "\n".join(rows)


def replace_table(text: str) -> str:
    """``text`` with the part between :data:`START` and :data:`END` replaced by :func:`markdown_table`."""
    head, start, rest = text.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError("the page has no metrics table markers")
    return f"{head}{START}\n{markdown_table()}\n{END}{tail}"


def metrics_registry(latest: Callable[[], Snapshot | None]) -> CollectorRegistry:
    """A registry holding only the snapshot collector (no process metrics of the HTTP thread)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(latest))
    return registry


class SnapshotCollector:
    """prometheus-client collector: reads the latest snapshot once per scrape."""

    def __init__(self, latest: Callable[[], Snapshot | None]) -> None:
        self.latest = latest

    def collect(self) -> Iterator[Metric]:
        snap = self.latest()
        f = _Families()
        f.add("driftwarden_build_info", {"version": _version()}, 1)
        f.add("driftwarden_up", {}, 0.0 if snap is None or snap.stopped else 1.0)
        if snap is not None:
            _fill(f, snap)
        yield from f.families.values()


class _Families:
    def __init__(self) -> None:
        self.families: dict[str, Metric] = {}
        for spec in METRICS:
            base = spec.name.removesuffix("_total") if spec.type == "counter" else spec.name
            cls: Any = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily}.get(spec.type)
            if spec.type == "info":
                keys = [k for k in spec.labels if k not in INFO_VALUES]
                fam: Metric = InfoMetricFamily(spec.name.removesuffix("_info"), spec.help, labels=keys)
            elif spec.type == "histogram":
                fam = HistogramMetricFamily(base, spec.help, labels=list(spec.labels))
            else:
                fam = cls(base, spec.help, labels=list(spec.labels))
            self.families[spec.name] = fam

    def add(self, name: str, labels: Mapping[str, str], value: Any) -> None:
        spec = SPECS[name]
        fam: Any = self.families[name]
        if spec.type == "info":
            keys = [k for k in spec.labels if k not in INFO_VALUES]
            fam.add_metric([labels[k] for k in keys], {k: labels[k] for k in spec.labels if k in INFO_VALUES})
            return
        if spec.type == "histogram":
            h: Histogram = value
            buckets = [(_bound(b), c) for b, c in zip(h.bounds, h.counts, strict=False)]
            buckets.append(("+Inf", h.count))
            fam.add_metric([labels[k] for k in spec.labels], buckets, h.total)
            return
        number = _number(value)
        if number is not None:
            fam.add_metric([str(labels[k]) for k in spec.labels], number)


def _fill(f: _Families, s: Snapshot) -> None:
    f.add("driftwarden_start_time_seconds", {}, s.started_at)
    f.add("driftwarden_last_progress_timestamp_seconds", {}, s.progressed_at)
    f.add("driftwarden_records_total", {}, s.records)
    for reason, n in sorted(s.dead_letters.items()):
        f.add("driftwarden_dead_letters_total", {"reason": reason}, n)
    f.add("driftwarden_unrouted_events_total", {}, s.unrouted)
    f.add("driftwarden_batch_duration_seconds", {}, s.batch_seconds)
    f.add("driftwarden_checkpoint_duration_seconds", {}, s.checkpoint_seconds)
    f.add("driftwarden_checkpoints_total", {}, s.checkpoints)
    f.add("driftwarden_last_checkpoint_timestamp_seconds", {}, s.last_checkpoint_at)
    f.add("driftwarden_source_reachable", {}, s.source_reachable)
    f.add("driftwarden_paused", {}, s.paused is not None)
    for partition, offset in sorted(s.positions.items()):
        f.add("driftwarden_source_position", {"partition": partition}, offset)
    for partition, lag in sorted(s.lag.items()):
        f.add("driftwarden_kafka_consumer_lag", {"partition": partition}, lag)
    for partition in s.owned:
        f.add("driftwarden_kafka_partition_owned", {"partition": partition}, 1)
    for (type_, state), n in sorted(s.actions.items()):
        f.add("driftwarden_actions_total", {"type": type_, "state": state}, n)
    f.add("driftwarden_actions_running", {}, s.running_actions)
    for model, n in sorted(s.alerts_firing.items()):
        f.add("driftwarden_alerts_firing", {"model": model}, n)
    notes = s.notifications
    for state in ("delivered", "failed"):
        f.add("driftwarden_notifications_total", {"state": state}, notes.get(state, 0))
    f.add("driftwarden_notifications_pending", {}, notes.get("pending", 0))
    f.add("driftwarden_notification_retries_total", {}, notes.get("retried", 0))
    f.add("driftwarden_alerts_dropped_total", {}, notes.get("dropped", 0))
    for model, view in sorted(s.models.items()):
        m = {"model": model}
        f.add("driftwarden_events_total", m, view.events)
        f.add("driftwarden_labels_joined_total", m, view.labels_joined)
        for side, n in sorted(view.pending.items()):
            f.add("driftwarden_join_pending", {**m, "side": side}, n)
        for side, n in sorted(view.expired.items()):
            f.add("driftwarden_join_expired_total", {**m, "side": side}, n)
        if view.champion:
            f.add("driftwarden_model_champion_info", {**m, "version": view.champion}, 1)
        for name, mon in view.monitors.items():
            _monitor(f, model, name, mon.latest, mon.fill, mon.last_signal_at, mon.signals)
        for rule in view.rules.values():
            r = {**m, "rule": rule.name}
            for state in RULE_STATES:
                f.add("driftwarden_rule_state", {**r, "state": state}, rule.state == state)
            f.add("driftwarden_rule_silenced", r, rule.silenced_until is not None)
            f.add("driftwarden_decisions_total", r, rule.decisions)


def _monitor(
    f: _Families,
    model: str,
    name: str,
    latest: Mapping[str, Any],
    fill: float | None,
    last: float | None,
    signals: int,
) -> None:
    m = {"model": model, "monitor": name}
    f.add("driftwarden_monitor_signals_total", m, signals)
    f.add("driftwarden_monitor_window_fill_ratio", m, fill)
    if not latest:
        return
    f.add("driftwarden_monitor_value", m, latest.get("value"))
    f.add("driftwarden_monitor_threshold", m, latest.get("threshold"))
    f.add("driftwarden_monitor_p_value", m, latest.get("p_value"))
    f.add("driftwarden_monitor_drift", m, bool(latest.get("drift")))
    f.add("driftwarden_monitor_last_signal_timestamp_seconds", m, last)
    features = latest.get("features")
    if isinstance(features, Mapping):
        for feature, stat in sorted(features.items()):
            if not isinstance(stat, Mapping):
                continue
            fm = {**m, "feature": str(feature)}
            f.add("driftwarden_feature_statistic", fm, stat.get("value"))
            f.add("driftwarden_feature_p_value", fm, stat.get("p_value"))
            f.add("driftwarden_feature_drift", fm, bool(stat.get("drift")))
    groups = latest.get("groups")
    if isinstance(groups, Mapping):
        largest = sorted(groups.items(), key=lambda kv: (-int(kv[1].get("count") or 0), str(kv[0])))[:MAX_GROUPS]
        for group, g in largest:
            f.add("driftwarden_fairness_group_rate", {**m, "group": str(group)}, g.get("rate"))
        f.add("driftwarden_fairness_interval_low", m, latest.get("ci_low"))
        f.add("driftwarden_fairness_interval_high", m, latest.get("ci_high"))


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, str):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if not math.isnan(number) else math.nan


def _bound(b: float) -> str:
    return repr(float(b))


def _version() -> str:
    try:
        return version("driftwarden")
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    import sys
    from pathlib import Path

    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        page = Path(sys.argv[2])
        page.write_text(replace_table(page.read_text()))
    else:
        print(markdown_table())
