"""``concept_drift``: complementary change detectors on a model's error stream, combined.

ADWIN finds abrupt changes fast and adapts its window to the stream; HDDM_A's Hoeffding bound
on the running mean catches slow, gradual rises (and STAGGER-like switches) that a window test
sees late. The monitor runs both (or the ``members`` given) on the same series; the rule is
*any member*: every member alarm is a signal, members that fire on the same update share one,
and with ``merge: N`` alarms within N values after a reported change are folded into it. Each
member runs at a confidence that keeps its own false alarms low (bench/paper.py: below 0.07 drift
alarms per 1,000 events combined, on every stream). The signal names the member(s) that fired
on that update (``members``) and the direction of the change; a change against
``direction`` (default ``up`` on ``error``: the model got worse) is reported with
``drift: false``.

>>> import numpy as np
>>> from driftwarden.detectors.base import Batch
>>> rng = np.random.default_rng(5)
>>> e = (rng.random(6000) < np.r_[np.full(3000, 0.1), np.full(3000, 0.3)]).astype(float)
>>> m = ConceptDrift()
>>> b = Batch.of(index=range(6000), prediction=np.zeros(6000), label=e)
>>> [(s.at, s.drift, s.details["members"]) for s in m.update(b)]
[(3071, True, ['adwin']), (3116, True, ['hddm_a']), (5944, True, ['hddm_a'])]
>>> [s.at for s in ConceptDrift(merge=1000).update(b)]  # folded: one signal per change
[3071, 5944]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from driftwarden.detectors.base import Batch, Monitor, Signal
from driftwarden.detectors.control import Cusum, Ewma
from driftwarden.detectors.streaming import Adwin, Ddm, Eddm, HddmA, HddmW, PageHinkley, Streaming

MEMBER_KINDS: dict[str, type[Monitor]] = {
    cls.kind: cls for cls in (Adwin, HddmA, HddmW, Ddm, Eddm, PageHinkley, Cusum, Ewma)
}
"""Kinds a ``concept_drift`` monitor can combine."""

DEFAULT_MEMBERS: dict[str, dict[str, Any]] = {
    "adwin": {"delta": 0.01},
    "hddm_a": {"drift_confidence": 0.005},
}
"""ADWIN for abrupt changes, HDDM_A for gradual ones. Their confidences are the paper's tuned
values (MOA's ADWIN delta 0.01; HDDM_A 0.005): on bench/paper.py they keep drift alarms below
0.07 per 1,000 events on every stream."""

MERGE = 0
"""Values after a reported change within which further member alarms are folded into it (the
same change paged once). Off by default: on bench/paper.py a 1,000-value merge cut SEA-gradual's
F1 from 0.64 to 0.60 and STAGGER-abrupt's drift alarms per 1,000 events only from 0.063 to 0.053."""


class ConceptDrift(Streaming):
    """Complementary detectors on one series (``error`` by default), one signal per change.

    ``members`` maps member kinds (adwin, hddm_a, hddm_w, ddm, eddm, page_hinkley, cusum, ewma)
    to their parameters; left out, ADWIN (delta 0.01) and HDDM_A (drift confidence 0.005).
    Memory: the members' (O(log n) for ADWIN, O(1) for the others).
    """

    kind = "concept_drift"

    def __init__(
        self,
        series: str = "error",
        members: dict[str, dict[str, Any]] | None = None,
        merge: int = MERGE,
        direction: str | None = None,
    ) -> None:
        self.series, self.members, self.merge, self.direction = series, members, merge, direction
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
        self._last: int | None = None  # `seen` of the last reported change

    def preload(self) -> None:
        for m in self._members.values():
            m.preload()

    def update(self, batch: Batch) -> list[Signal]:
        if len(batch) == 0 or not batch.has(self.series):
            return []
        fired: list[tuple[int, int, str, Signal]] = []
        for order, (name, member) in enumerate(self._members.items()):
            fired += [(int(s.details["seen"]), order, name, s) for s in member.update(batch)]
        fired.sort(key=lambda f: (f[0], f[1]))
        out: list[Signal] = []
        i = 0
        while i < len(fired):
            seen = fired[i][0]
            group = [f for f in fired[i:] if f[0] == seen]
            i += len(group)
            if self._last is not None and seen - self._last <= self.merge:
                continue  # the same change, already reported
            self._last = seen
            first = group[0][3]
            directions = [f[3].details.get("direction") for f in group]
            direction = "up" if "up" in directions else "down"
            out.append(
                Signal(
                    kind=self.kind,
                    at=first.at,
                    ts=first.ts,
                    drift=self.watching in ("both", direction),
                    value=first.value,
                    details={
                        "series": self.series,
                        "seen": seen,
                        "direction": direction,
                        "members": [f[2] for f in group],
                    },
                )
            )
        return out

    def snapshot(self) -> dict[str, Any]:
        return {"members": {n: m.snapshot() for n, m in self._members.items()}, "last": self._last}

    def restore(self, state: Mapping[str, Any]) -> None:
        for name, member in self._members.items():
            member.restore(state["members"][name])
        self._last = None if state["last"] is None else int(state["last"])
