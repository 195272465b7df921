"""``concept_drift``: complementary change detectors on a model's error stream, combined.

ADWIN finds abrupt changes fast and adapts its window to the stream; HDDM_A's bound on the running
mean (Bernstein's, detectors/hddm.py) catches slow, gradual rises (and STAGGER-like switches) that a
window test sees late. The monitor runs both (or the ``members`` given) on the same series; the
rule is *any member*: every member alarm is a signal, members that fire on the same update share
one, and alarms within ``merge`` values (default 150) after a reported change the same way are
folded into it (the members often see one rise a few dozen values apart). After a fall in the
error (a ``down`` signal) the members other than ADWIN start over (``restart``), so HDDM_A does not
go on testing against a level the model has left. The signal names the member(s) that fired on
that update (``members``) and the direction of the change; a change against ``direction`` (default
``up`` on ``error``: the model got worse) is reported with ``drift: false`` (a model that got
better is news, not a page).

On bench/paper.py (the protocol of Cerqueira et al. 2026) it beats the paper's best F1 on all six
streams and finds at least the share of changes River's two-sided ADWIN finds on each (the way the
error went), with about as many drift alarms outside the changes as ADWIN alone (docs/monitors.md).

>>> import numpy as np
>>> from driftwarden.detectors.base import Batch
>>> rng = np.random.default_rng(5)
>>> rates = np.r_[np.full(2000, 0.3), np.full(2000, 0.1), np.full(2000, 0.3)]  # better, then worse
>>> e = (rng.random(6000) < rates).astype(float)
>>> b = Batch.of(index=range(6000), prediction=np.zeros(6000), label=e)
>>> [(s.at, s.drift, s.details["direction"], s.details["members"]) for s in ConceptDrift().update(b)]
[(2111, False, 'down', ['adwin']), (4095, True, 'up', ['adwin'])]
>>> [(s.at, s.details["members"]) for s in ConceptDrift(merge=0).update(b)]  # HDDM_A confirms the rise
[(2111, ['adwin']), (4095, ['adwin']), (4102, ['hddm_a'])]
>>> [s.at for s in ConceptDrift(restart=False, merge=0).update(b)]  # HDDM_A sees the fall late, the rise later
[2111, 2153, 4095, 4244]
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
from driftwarden.detectors.base import Batch, Monitor, Signal
from driftwarden.detectors.control import Cusum, Ewma
from driftwarden.detectors.eddm import Eddm
from driftwarden.detectors.hddm import HddmA, HddmW
from driftwarden.detectors.streaming import Adwin, Ddm, PageHinkley, Streaming

MEMBER_KINDS: dict[str, type[Monitor]] = {
    cls.kind: cls for cls in (Adwin, HddmA, HddmW, Ddm, Eddm, PageHinkley, Cusum, Ewma)
}
"""Kinds a ``concept_drift`` monitor can combine."""

DEFAULT_MEMBERS: dict[str, dict[str, Any]] = {
    "adwin": {"delta": 0.05},
    "hddm_a": {"drift_confidence": 0.0001},
}
"""ADWIN for abrupt changes, HDDM_A for gradual ones. A lenient ADWIN (delta 0.05: alone, 0.003-0.011
false alarms per 1,000 events on bench/paper.py, as few as at its default 0.002, and more
changes found) and a strict HDDM_A with Bernstein's bound (0.0001, a third of its default):
together, with the restart rule, they find more changes than River's two-sided ADWIN on every
stream of bench/paper.py. Until session 6 the HDDM_A member was River's (Hoeffding's bound) at
0.0005: on bench/paper.py 35 drift alarms outside the changes against ADWIN-alone's 13; with
Bernstein's at 0.0001, 23 (docs/monitors.md)."""

ADAPTIVE = frozenset({"adwin"})
"""Members that adapt to a change themselves (ADWIN drops the part of its window that differs)."""

RESTART = True
"""After a fall in the error (a ``down`` signal of any member) the members other than ADWIN
start over. HDDM_A tests against the level since its own last restart, and its up side neither
sees nor restarts on a fall, so it went on watching a level the model had left. Measured on
bench/paper.py (members ADWIN 0.05 + HDDM_A 0.0005): without restarts F1 0.82/0.66/0.73/0.85/
0.632/0.81, restarting on falls 0.83/0.65/0.77/0.89/0.67/0.84 with the same changes found;
restarting on every signal also drops HDDM_A's later confirmations of a rise (SEA gradual 0.60,
below the paper's 0.632)."""

TRAIL = 100
"""Values over which a signal's ``value`` is the series' mean (the error rate over the last 100
predictions, on ``error``): the same for any cut of the stream into batches, whichever member fired."""

Fired = tuple[int, int, str, Signal]
"""A member signal: (row in the batch, member order, member name, signal)."""

MERGE = 150
"""Values after a reported change within which further alarms the same way are folded into it (the
same change paged once: the members often see one rise a few dozen values apart). On
bench/paper.py most of HDDM_A's alarms outside the changes came 15-134 values after ADWIN's on the
same rise; folding them leaves 15 drift alarms outside the changes on the six streams, against
ADWIN-alone's 13, at ADWIN's count on 5 of 6 (docs/monitors.md: merges of 100-500, with and
without a confirmation by the last 100 values). Longer merges also fold the paper's F1 hits
(SEA gradual: 0.642 at 150, 0.627 at 200, below the paper's 0.632)."""


class ConceptDrift(Streaming):
    """Complementary detectors on one series (``error`` by default), one signal per update.

    ``members`` maps member kinds (adwin, hddm_a, hddm_w, ddm, eddm, page_hinkley, cusum, ewma)
    to their parameters; left out, ADWIN (delta 0.05) and HDDM_A (Bernstein's bound, drift confidence 0.0001).
    ``restart`` (default true): after a fall in the error the members other than ADWIN start
    over. ``merge`` (default 150): alarms within that many values after a reported change the same
    way are folded into it. A batch's index values must be unique (replay's and the daemon's are). Memory: the
    members' (O(log n) for ADWIN, O(1) for the others).
    """

    kind = "concept_drift"

    def __init__(
        self,
        series: str = "error",
        members: dict[str, dict[str, Any]] | None = None,
        merge: int = MERGE,
        direction: str | None = None,
        restart: bool = RESTART,
    ) -> None:
        self.series, self.members, self.merge, self.direction = series, members, merge, direction
        self.restart = restart
        self._check_series()
        chosen = DEFAULT_MEMBERS if members is None else members
        if not isinstance(chosen, Mapping) or not chosen:
            raise ValueError(f"members: {members!r} is not allowed; give a mapping such as {DEFAULT_MEMBERS}")
        for name, params in chosen.items():
            if name not in MEMBER_KINDS:
                raise ValueError(f"members: {name!r} is not allowed; allowed: {sorted(MEMBER_KINDS)}")
            if not isinstance(params, Mapping) or {"series", "direction"} & set(params):
                raise ValueError(
                    f"members.{name}: {params!r} is not allowed; "
                    "give that kind's parameters except series and direction"
                )
        if not isinstance(restart, bool):
            raise ValueError(f"restart: {restart!r} is not allowed; give true or false")
        if not (isinstance(merge, int) and merge >= 0):
            raise ValueError(f"merge: {merge!r} is not allowed; it must be an integer >= 0")
        super().__init__()

    def _build(self) -> dict[str, Monitor]:
        chosen = DEFAULT_MEMBERS if self.members is None else self.members
        out: dict[str, Monitor] = {}
        for name, params in chosen.items():
            try:
                # members watch "up": their signals then say which way every change went
                out[name] = MEMBER_KINDS[name](series=self.series, direction="up", **params)  # type: ignore[call-arg]
            except TypeError as e:
                raise ValueError(f"members.{name}: {e}") from None
        return out

    def _reset(self) -> None:
        self._members = self._build()
        self._last: dict[str, int] = {}  # direction -> `seen` of the last change reported that way
        self._seen = 0  # values of the series seen
        self._tail = np.empty(0)  # the last TRAIL values, for the signals' value

    def preload(self) -> None:
        for m in self._members.values():
            m.preload()

    def update(self, batch: Batch) -> list[Signal]:
        if len(batch) == 0 or not batch.has(self.series):
            return []
        values = np.asarray(batch.series(self.series), dtype=np.float64)
        if np.isnan(values).any():
            batch = batch.take(np.flatnonzero(~np.isnan(values)))
        row_of = {at: r for r, at in enumerate(batch.index.tolist())}  # replay's indices are unique
        trail = np.concatenate([self._tail, np.asarray(batch.series(self.series), dtype=np.float64)])
        cumulative = np.concatenate([[0.0], np.cumsum(trail)])
        before = len(self._tail)

        def feed(name: str, rows: Batch) -> list[Fired]:
            order = names.index(name)
            return [(row_of[s.at], order, name, s) for s in self._members[name].update(rows)]

        names = list(self._members)
        restarted = [n for n in names if self.restart and n not in ADAPTIVE]
        fired: list[Fired] = []
        for name in names:  # ADWIN adapts its window itself: one pass over the batch
            if name not in restarted:
                fired += feed(name, batch)
        pos = 0
        while restarted and pos < len(batch):
            saved = {n: copy.deepcopy(self._members[n]) for n in restarted}
            rest = batch.take(np.arange(pos, len(batch)))
            part = [f for n in restarted for f in feed(n, rest)]
            later = part + [f for f in fired if f[0] >= pos]
            rises = {f[0] for f in later if f[3].details.get("direction") == "up"}
            cut = min({f[0] for f in later if f[3].details.get("direction") == "down"} - rises, default=None)
            if cut is None:
                fired += part
                break
            # rewind to the first fall in the error, then the members start over after it
            self._members.update(saved)
            head = batch.take(np.arange(pos, cut + 1))
            fired += [f for n in restarted for f in feed(n, head)]
            fresh = self._build()
            self._members.update({n: fresh[n] for n in restarted})
            pos = cut + 1
        fired.sort(key=lambda f: (f[0], f[1]))
        out: list[Signal] = []
        i = 0
        while i < len(fired):
            row = fired[i][0]
            group = [f for f in fired[i:] if f[0] == row]
            i += len(group)
            seen = self._seen + row + 1
            directions = [f[3].details.get("direction") for f in group]
            direction = "up" if "up" in directions else "down"
            last = self._last.get(direction)
            if last is not None and seen - last <= self.merge:
                continue  # the same change, already reported
            self._last[direction] = seen
            first = group[0][3]
            out.append(
                Signal(
                    kind=self.kind,
                    at=first.at,
                    ts=first.ts,
                    drift=self.watching in ("both", direction),
                    value=_mean_to(cumulative, before + row, TRAIL),
                    threshold=next((f[3].threshold for f in group if f[3].threshold is not None), None),
                    details={
                        "series": self.series,
                        "seen": seen,
                        "direction": direction,
                        "members": [f[2] for f in group],
                    },
                )
            )
        self._seen += len(batch)
        self._tail = trail[-TRAIL:]
        return out

    def snapshot(self) -> dict[str, Any]:
        return {
            "members": {n: m.snapshot() for n, m in self._members.items()},
            "last": self._last,
            "seen": self._seen,
            "tail": self._tail.tolist(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        for name, member in self._members.items():
            member.restore(state["members"][name])
        last = state["last"]
        if last is None or isinstance(last, int):  # saved before the merge was per direction
            last = {} if last is None else {"up": last, "down": last}
        self._last = {d: int(v) for d, v in last.items()}
        self._seen = int(state.get("seen", 0))
        self._tail = np.asarray(state.get("tail", []), dtype=np.float64)


def _mean_to(cumulative: np.ndarray, row: int, width: int) -> float:
    """The mean of the ``width`` values up to and including ``row``, from their running sums.

    >>> _mean_to(np.cumsum([0.0, 1, 0, 1, 1]), 3, 2)
    1.0
    """
    start = max(0, row + 1 - width)
    return float((cumulative[row + 1] - cumulative[start]) / (row + 1 - start))
