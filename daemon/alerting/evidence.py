"""Evidence behind a drift alert: an Evidently data-drift report of the triggering window
(reference against current), rendered in a worker thread — never in the loop — and kept under
the state folder in ``evidence/``; the alert links it in its ``evidence`` annotation (and
Alertmanager's ``generatorURL``).

An alert carries a ``window`` when the monitor that raised it is windowed and compares features
(``feature_drift``...). The current data are the labeled buffer's rows of that window; the
reference is the policy's reference file, else the oldest buffered rows before the window (the
first window, for a monitor whose reference is the first window), as many as the current ones.

Beside each rendered report, ``<report>.json`` says what it shows (model, rule, event, window); it
is written once the report is complete, so :func:`reports` lists only reports that open, and the
daemon's HTTP face serves them at ``/evidence/<file>`` (:func:`report_path`) and links them from
its status page.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from driftwarden.daemon.alerting.alerts import Notification
from driftwarden.daemon.io.private import open_private, touch_private

log = logging.getLogger("driftwarden.alerting")

DataProvider = Callable[[str, int, int], Any]
"""(model, upto event index, last N rows) → the labeled frame (features, ``__index``...)."""

MAX_ROWS = 50_000
"""Rows read for one report at most: bounds the memory and the seconds of a render."""

MAX_LISTED = 1000
"""Reports :func:`reports` reads at most (the newest by name order of event index): bounds a listing."""

REPORT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,250}\.html")
"""A report's file name as the daemon makes them; anything else is not served."""


def report_path(folder: Path, name: str) -> Path | None:
    """The report ``name`` in ``folder`` when it is a report name (no path, no dot-file) that exists, else None.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); _ = (d / "m-r-7.html").write_text("<html>")
    >>> report_path(d, "m-r-7.html") == d / "m-r-7.html", report_path(d, "../state.db"), report_path(d, "x.html")
    (True, None, None)
    """
    if not REPORT_NAME.fullmatch(name):
        return None
    path = folder / name
    return path if path.is_file() and path.resolve().parent == folder.resolve() else None


def reports(folder: Path, model: str | None = None) -> list[dict[str, Any]]:
    """The rendered reports in ``folder`` (of ``model``), by event index: each the ``<report>.json``
    written beside it, with ``file`` its name. Unreadable entries are left out."""
    if not folder.is_dir():
        return []
    out = []
    for meta in sorted(folder.glob("*.json"))[-MAX_LISTED:]:
        try:
            entry = orjson.loads(meta.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        if not isinstance(entry, dict) or report_path(folder, str(entry.get("file", ""))) is None:
            continue
        if model is None or entry.get("model") == model:
            out.append(entry)
    return sorted(out, key=lambda e: (int(e.get("at") or 0), str(e["file"])))


class Evidence:
    """Schedules reports for firing drift alerts and links them (see the module docstring)."""

    def __init__(self, folder: Path, external_url: str | None = None) -> None:
        self.folder = Path(folder)
        self.external_url = external_url.rstrip("/") if external_url else None
        self.rendered = 0
        self.failed = 0
        self._threads: list[threading.Thread] = []

    def link(self, name: str) -> str:
        return f"{self.external_url}/evidence/{name}" if self.external_url else str(self.folder / name)

    def attach(
        self,
        notes: Sequence[Notification],
        data: DataProvider,
        reference: Callable[[str], Mapping[str, Any] | None],
    ) -> list[Notification]:
        """The notes, firing drift alerts with an ``evidence`` annotation; their reports scheduled.
        Called in the loop's thread: only the buffer is read here, the rendering is a worker's."""
        out = []
        for n in notes:
            window = n.alert.get("window")
            if n.status != "firing" or not window:
                out.append(n)
                continue
            name = f"{n.model}-{n.rule}-{n.alert['at']}.html".replace("/", "_")
            try:
                current, ref = self._frames(n.model, int(window[0]), int(window[1]), data, reference)
            except Exception as e:  # noqa: BLE001 - evidence is optional; the alert goes out regardless
                log.warning("no evidence for alert %s: %s", n.key, e)
                out.append(n)
                continue
            if current is None or not len(current) or ref is None or not len(ref):
                out.append(n)
                continue
            title = f"{n.model}: {n.rule} — window {window[0]}..{window[1]} against the reference"
            meta = {
                "file": name,
                "model": n.model,
                "rule": n.rule,
                "at": n.alert["at"],
                "ts": n.alert.get("ts"),
                "window": [int(window[0]), int(window[1])],
                "severity": n.alert.get("labels", {}).get("severity"),
                "summary": n.alert.get("annotations", {}).get("summary"),
            }
            self._render(ref, current, self.folder / name, title, meta)
            annotations = {**n.alert["annotations"], "evidence": self.link(name)}
            out.append(replace(n, alert={**n.alert, "annotations": annotations}))
        return out

    def _frames(
        self,
        model: str,
        start: int,
        end: int,
        data: DataProvider,
        reference: Callable[[str], Mapping[str, Any] | None],
    ) -> tuple[Any, Any]:
        import pandas as pd

        frame = data(model, end - 1, MAX_ROWS)
        features = [c for c in frame.columns if not str(c).startswith("__")]
        index = frame["__index"]
        current = frame.loc[(index >= start) & (index < end), features]
        ref_columns = reference(model)
        if ref_columns is not None:
            ref = pd.DataFrame({k: v for k, v in ref_columns.items() if k in features})
        else:
            ref = frame.loc[index < start, features].head(len(current))
        return current.reset_index(drop=True), ref.reset_index(drop=True)

    def _render(self, reference: Any, current: Any, path: Path, title: str, meta: Mapping[str, Any]) -> None:
        def work() -> None:
            from driftwarden.detectors.evidently_adapter import render_drift_report

            try:
                touch_private(path)  # Evidently then writes into the 0600 file
                render_drift_report(reference, current, path, title=title)
                with open_private(path.with_suffix(".json"), "wb") as f:  # after the report: listed once complete
                    f.write(orjson.dumps(dict(meta), default=str))
                self.rendered += 1
                log.info("evidence written: %s", path)
            except Exception:  # noqa: BLE001 - a report that fails is logged, never raised
                self.failed += 1
                log.exception("the Evidently report %s failed", path)

        t = threading.Thread(target=work, name=f"evidence:{path.name}", daemon=True)
        self._threads.append(t)
        t.start()

    def wait(self, timeout: float | None = None) -> None:
        for t in self._threads:
            t.join(timeout)
        self._threads = [t for t in self._threads if t.is_alive()]
