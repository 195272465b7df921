"""Invariants of the rule state machine under Hypothesis: ``for``, cooldown, max_per_day, inhibition
and restarts (the state survives a JSON round trip mid-stream and later decisions do not change)."""

from __future__ import annotations

import json

from driftwarden.policies.rules import DAY, RuleState, RuleTiming, step
from hypothesis import given, settings
from hypothesis import strategies as st

# Evaluations: (gap in seconds since the previous one, condition, inhibited); times never go back
# (the engine's rule clock guarantees it).
evaluations = st.lists(
    st.tuples(st.floats(0, 4 * 3600, allow_nan=False), st.booleans(), st.booleans()),
    min_size=1,
    max_size=120,
)
timings = st.builds(
    RuleTiming,
    for_windows=st.none() | st.integers(1, 5),
    for_seconds=st.none() | st.floats(0, 7200),
    keep_firing_for=st.none() | st.floats(0, 7200),
    cooldown=st.none() | st.floats(0, 12 * 3600),
    max_per_day=st.none() | st.integers(1, 4),
)

SETTINGS = settings(max_examples=300, deadline=None)


def run(
    timing: RuleTiming, evs: list[tuple[float, bool, bool]], restart_at: int | None = None, use_inhibition: bool = True
) -> list[tuple[float, bool, bool, bool]]:
    """(time, condition, inhibited, fired) per evaluation; optionally a restart before evaluation ``restart_at``."""
    state, now, out = RuleState(), 0.0, []
    for i, (gap, cond, inhibited) in enumerate(evs):
        if i == restart_at:
            state = RuleState.from_dict(json.loads(json.dumps(state.as_dict())))
        now += gap
        inhibited = inhibited and use_inhibition
        state, fired = step(timing, state, cond, now, inhibited=inhibited)
        out.append((now, cond, inhibited, fired))
    return out


@SETTINGS
@given(timings.filter(lambda t: t.keep_firing_for is None), evaluations)
def test_never_fires_before_for_has_elapsed(timing: RuleTiming, evs: list[tuple[float, bool, bool]]) -> None:
    trace = run(timing, evs)
    for k, (now, cond, _, fired) in enumerate(trace):
        if not fired:
            continue
        assert cond
        start = k
        while start > 0 and trace[start - 1][1]:
            start -= 1
        # The run of consecutive true evaluations ending here is long enough in windows and in time.
        assert k - start + 1 >= (timing.for_windows or 1)
        assert now - trace[start][0] >= (timing.for_seconds or 0.0)


@SETTINGS
@given(timings, evaluations)
def test_with_keep_firing_for_the_episode_still_covers_for(
    timing: RuleTiming, evs: list[tuple[float, bool, bool]]
) -> None:
    trace = run(timing, evs)
    for k, (now, cond, _, fired) in enumerate(trace):
        if fired:
            assert cond
            trues = [(t, i) for i, (t, c, _, _) in enumerate(trace[: k + 1]) if c]
            # Some earlier true evaluation opened an episode long enough in windows and in time.
            assert any(
                len([1 for _, j in trues if j >= i]) >= (timing.for_windows or 1)
                and now - t >= (timing.for_seconds or 0.0)
                for t, i in trues
            )


@SETTINGS
@given(timings, evaluations)
def test_never_two_firings_within_the_cooldown(timing: RuleTiming, evs: list[tuple[float, bool, bool]]) -> None:
    times = [now for now, _, _, fired in run(timing, evs) if fired]
    if timing.cooldown is not None:
        assert all(b - a >= timing.cooldown for a, b in zip(times, times[1:], strict=False))


@SETTINGS
@given(timings, evaluations)
def test_never_more_than_max_per_day_in_any_24_hours(timing: RuleTiming, evs: list[tuple[float, bool, bool]]) -> None:
    times = [now for now, _, _, fired in run(timing, evs) if fired]
    if timing.max_per_day is not None:
        for i, start in enumerate(times):
            assert sum(1 for t in times[i:] if t - start < DAY) <= timing.max_per_day


@SETTINGS
@given(timings, evaluations)
def test_never_fires_while_inhibited(timing: RuleTiming, evs: list[tuple[float, bool, bool]]) -> None:
    assert not any(fired and inhibited for _, _, inhibited, fired in run(timing, evs))


def test_a_muted_firing_uses_no_budget() -> None:
    """Inhibited evaluations move the phase but spend no cooldown: the rule fires on the first
    evaluation after the inhibition ends (Alertmanager's inhibition), then waits its cooldown."""
    t = RuleTiming(for_windows=2, cooldown=3600)
    s = RuleState()
    out = []
    for now, inhibited in [(0, True), (60, True), (120, True), (180, False), (240, False), (3780, False)]:
        s, fired = step(t, s, True, float(now), inhibited=inhibited)
        out.append((now, s.phase, fired))
    assert out == [
        (0, "pending", False),
        (60, "firing", False),
        (120, "firing", False),
        (180, "firing", True),
        (240, "firing", False),
        (3780, "firing", True),
    ]


@SETTINGS
@given(timings, evaluations, st.integers(0, 120))
def test_a_restart_changes_no_decision(timing: RuleTiming, evs: list[tuple[float, bool, bool]], at: int) -> None:
    assert run(timing, evs, restart_at=at) == run(timing, evs)


def test_keep_firing_for_bridges_a_flap() -> None:
    t = RuleTiming(for_windows=3, keep_firing_for=600)
    s = RuleState()
    fired = []
    for now, cond in [(0, True), (60, True), (120, True), (180, False), (240, True), (2000, False), (2100, True)]:
        s, f = step(t, s, cond, float(now))
        fired.append((now, f, s.phase))
    assert fired == [
        (0, False, "pending"),
        (60, False, "pending"),
        (120, True, "firing"),
        (180, False, "firing"),  # kept firing: within 600 s of the last true
        (240, True, "firing"),  # fires again at once (no cooldown), 'for' not restarted
        (2000, False, "inactive"),  # 1760 s after the last true: gone
        (2100, False, "pending"),
    ]  # a new episode needs 'for' again
