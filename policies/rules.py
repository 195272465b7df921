"""The rule state machine, borrowed from Prometheus alerting rules and Alertmanager.

:func:`step` is a pure function of (timing, previous state, condition, now): inactive →
pending (the condition holds, ``for`` has not elapsed) → firing. A firing rule emits a decision
when its cooldown (Alertmanager's repeat interval) has passed and the day's budget allows.

>>> t = RuleTiming(for_windows=2, cooldown=3600)
>>> s = RuleState()
>>> s, fire = step(t, s, True, now=0.0); fire, s.phase
(False, 'pending')
>>> s, fire = step(t, s, True, now=60.0); fire, s.phase
(True, 'firing')
>>> s, fire = step(t, s, True, now=120.0); fire     # within the cooldown
False
>>> s, fire = step(t, s, False, now=180.0); s.phase
'inactive'

``keep_firing_for`` keeps a firing rule firing (its ``for`` is not restarted) for that long after
the condition stopped holding; it emits decisions only while the condition holds. An
``inhibited`` rule (a retrain of its model is running) goes on moving between phases but emits
nothing, and a muted firing uses none of the cooldown or the daily budget, so the rule fires on
the first evaluation after the inhibition ends if it still holds (Alertmanager's inhibition).

>>> s, fire = step(RuleTiming(), RuleState(), True, now=0.0, inhibited=True); fire, s.phase, s.last_fired
(False, 'firing', None)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

DAY = 86400.0

Phase = Literal["inactive", "pending", "firing"]


@dataclass(frozen=True, slots=True)
class RuleTiming:
    """The timing part of a rule: ``for`` (windows or seconds), ``keep_firing_for``, ``cooldown``, ``max_per_day``."""

    for_windows: int | None = None
    for_seconds: float | None = None
    keep_firing_for: float | None = None
    cooldown: float | None = None
    max_per_day: int | None = None


@dataclass(frozen=True, slots=True)
class RuleState:
    phase: Phase = "inactive"
    active_since: float | None = None
    held: int = 0
    last_true: float | None = None
    last_fired: float | None = None
    fired: tuple[float, ...] = ()
    """Firing times within the last 24 hours (for ``max_per_day``)."""

    def as_dict(self) -> dict[str, Any]:
        """Every field, ``fired`` as a list (by hand: ``dataclasses.asdict`` deep-copies, a fifth of a
        busy model's snapshot).

        >>> from dataclasses import fields
        >>> list(RuleState(fired=(1.0,)).as_dict()) == [f.name for f in fields(RuleState)]
        True
        """
        return {
            "phase": self.phase,
            "active_since": self.active_since,
            "held": self.held,
            "last_true": self.last_true,
            "last_fired": self.last_fired,
            "fired": list(self.fired),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RuleState:
        return cls(**{**d, "fired": tuple(d.get("fired", ()))})


def step(
    timing: RuleTiming, state: RuleState, condition: bool, now: float, inhibited: bool = False
) -> tuple[RuleState, bool]:
    """The next state and whether the rule fires (emits a decision) at ``now``."""
    fired = tuple(t for t in state.fired if now - t < DAY)
    if not condition:
        keep = timing.keep_firing_for
        if (
            state.phase == "firing"
            and keep is not None
            and state.last_true is not None
            and now - state.last_true < keep
        ):
            return replace(state, fired=fired), False
        return RuleState(last_fired=state.last_fired, fired=fired), False
    held = state.held + 1
    since = state.active_since if state.active_since is not None else now
    ready = True
    if timing.for_windows is not None and held < timing.for_windows:
        ready = False
    if timing.for_seconds is not None and now - since < timing.for_seconds:
        ready = False
    state = replace(
        state, held=held, active_since=since, last_true=now, fired=fired, phase="firing" if ready else "pending"
    )
    if not ready or inhibited:
        return state, False
    if state.last_fired is not None and timing.cooldown is not None and now - state.last_fired < timing.cooldown:
        return state, False
    if timing.max_per_day is not None and len(fired) >= timing.max_per_day:
        return state, False
    return replace(state, last_fired=now, fired=fired + (now,)), True
