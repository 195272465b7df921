"""How runs are shown: JSON lines for machines, a rich timeline for people.

Every JSON line has ``type`` (scenario, signal, decision, action, alert, dead_letter, summary),
``model``, ``at`` (0-based index of the input event that caused it) and ``ts``.

>>> import io
>>> buf = io.StringIO()
>>> out = JsonLines(buf)
>>> out({"type": "decision", "model": "m", "at": 3, "ts": 1.0, "rule": "r"})
>>> buf.getvalue()
'{"type":"decision","model":"m","at":3,"ts":1.0,"rule":"r"}\\n'
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterable
from typing import IO, Any

import orjson
from driftwarden.deploy.states import ActionState
from rich.console import Console
from rich.table import Table

FIRST_KEYS = ("type", "model", "at", "ts")


class JsonLines:
    """One JSON object per line; the keys every line has come first."""

    def __init__(self, stream: IO[str] | None = None, *, quiet_signals: bool = False) -> None:
        self.stream = stream or sys.stdout
        self.quiet_signals = quiet_signals

    def __call__(self, item: dict[str, Any]) -> None:
        if self.quiet_signals and item["type"] == "signal" and not item.get("drift"):
            return
        ordered = {k: item.get(k) for k in FIRST_KEYS}
        ordered.update({k: v for k, v in item.items() if k not in ordered})
        self.stream.write(orjson.dumps(ordered, option=orjson.OPT_SERIALIZE_NUMPY, default=str).decode() + "\n")
        self.stream.flush()


def when(ts: float | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


class Timeline:
    """A human timeline: drift signals, decisions and actions as they happen (quiet signals are skipped)."""

    def __init__(self, console: Console | None = None, *, all_signals: bool = False) -> None:
        self.console = console or Console(stderr=False, highlight=False)
        self.all_signals = all_signals
        self.counts: dict[str, int] = {}

    def __call__(self, item: dict[str, Any]) -> None:
        kind = item["type"]
        self.counts[kind] = self.counts.get(kind, 0) + 1
        at = f"[dim]#{item.get('at')!s:>6}[/]"
        if kind == "scenario":
            self.console.print(
                f"[bold]scenario[/] model [cyan]{item['model']}[/]: drift injected at event "
                f"[bold]{item['drift_at']}[/] ({item.get('description', '')}); champion {item.get('champion')}"
            )
        elif kind == "signal":
            if not item.get("drift") and not self.all_signals:
                return
            style = "red" if item.get("drift") else "dim"
            value = item.get("value")
            shown = f"{value:.4g}" if isinstance(value, int | float) else str(value)
            extra = ""
            if item.get("kind") == "feature_drift" and item.get("drift"):
                moved = [k for k, v in (item.get("features") or {}).items() if v.get("drift")]
                extra = f" features: {', '.join(moved)}"
            self.console.print(
                f"{at} [{style}]signal[/]   {item['model']}.{item['monitor']} ({item['kind']}) "
                f"value {shown} threshold {item.get('threshold')}{extra}"
            )
        elif kind == "decision":
            dry = " [yellow](dry run)[/]" if item.get("dry_run") else ""
            self.console.print(
                f"{at} [bold yellow]decision[/] rule [bold]{item['rule']}[/] → {item['action']}{dry}  "
                f"[dim]when {item.get('reason')}[/]"
            )
        elif kind == "action":
            state = item.get("state")
            styles: dict[str, str] = {
                ActionState.DEPLOYED: "bold green",
                ActionState.PROMOTED: "green",
                ActionState.REJECTED: "yellow",
                ActionState.FAILED: "bold red",
                ActionState.DONE: "green",
                ActionState.SKIPPED: "dim",
            }
            style = styles.get(state or "", "cyan")
            detail = ""
            if item.get("candidate"):
                detail = f" candidate {_metrics(item['candidate'])} vs champion {_metrics(item.get('champion'))}"
            if item.get("version"):
                detail += f" version {item['version']}"
            if state in (ActionState.FAILED, ActionState.REJECTED) and item.get("reason"):
                detail += f" — {item['reason']}"
            self.console.print(f"{at} [{style}]action[/]   {item.get('action')} {state}{detail}")
        elif kind == "dead_letter":
            self.console.print(f"{at} [magenta]dead letter[/] {item.get('reason')}")
        elif kind == "alert":
            style = "bold red" if item.get("status") == "firing" else "green"
            summary = (item.get("annotations") or {}).get("summary", "")
            self.console.print(f"{at} [{style}]alert[/]    {item.get('rule')} {item.get('status')}  [dim]{summary}[/]")


def alert_table(alerts: Iterable[dict[str, Any]]) -> Table:
    """The alerts a replay would have sent: firing and resolved, with labels and summary."""
    t = Table(title="alerts that would have been sent", header_style="bold")
    for col in ("at", "status", "alert", "labels", "summary"):
        t.add_column(col, justify="right" if col == "at" else "left")
    for a in alerts:
        labels = a.get("labels") or {}
        rest = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname")
        t.add_row(
            str(a["at"]),
            a["status"],
            str(labels.get("alertname", "")),
            rest,
            str((a.get("annotations") or {}).get("summary", "")),
        )
    return t


def _metrics(m: dict[str, float] | None) -> str:
    if not m:
        return "-"
    return ", ".join(f"{k} {v:.3f}" for k, v in m.items())


def summary_table(summary: dict[str, Any], title: str = "summary") -> Table:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("records", justify="right")
    table.add_column("events", justify="right")
    table.add_column("dead letters", justify="right")
    table.add_column("labels joined", justify="right")
    table.add_column("signals", justify="right")
    table.add_column("decisions", justify="right")
    table.add_column("seconds", justify="right")
    table.add_row(
        *(
            str(summary[k])
            for k in ("records", "events", "dead_letters", "labels_joined", "signals", "decisions", "seconds")
        )
    )
    return table


def rule_table(decisions: Iterable[dict[str, Any]], rules: Iterable[tuple[str, str, str]]) -> Table:
    """Per rule: firings, first and last event index, and what would have been done."""
    table = Table(title="rules", header_style="bold")
    for col in ("model", "rule", "firings", "first at", "last at", "action"):
        table.add_column(col, justify="right" if col in ("firings", "first at", "last at") else "left")
    by_rule: dict[tuple[str, str], list[int]] = {}
    for d in decisions:
        by_rule.setdefault((d["model"], d["rule"]), []).append(d["at"])
    for model, rule, action in rules:
        ats = by_rule.get((model, rule), [])
        table.add_row(model, rule, str(len(ats)), str(ats[0]) if ats else "-", str(ats[-1]) if ats else "-", action)
    return table
