"""Fleet policy files: ``models:``, ``where:`` and ``overrides:`` load, or are refused with positions."""

from __future__ import annotations

from pathlib import Path

from driftwarden.policies.fleet import Fleet, bind
from driftwarden.policies.loader import check_policy, load_policy

HEAD = "version: 1\nmonitors:\n  perf: {kind: performance, window: {events: 100}, threshold: 0.8}\n"


def errors(tmp: Path, text: str) -> list[str]:
    (tmp / "p.yaml").write_text(text)
    return [e.short() for e in check_policy(tmp / "p.yaml")]


def test_a_policy_gives_exactly_one_of_model_and_models(tmp_path: Path) -> None:
    both = errors(tmp_path, "version: 1\nmodel: a\nmodels: 'b-*'\n")
    assert both == ["p.yaml:1:1: give exactly one of 'model' (one model) or 'models' (names or globs of a fleet)"]
    assert errors(tmp_path, "version: 1\nmodels: []\n") == ["p.yaml:1:1: 'models' names no model"]
    assert errors(tmp_path, "version: 1\nmodels: ['a', ' ']\n") == ["p.yaml:2:15: models[1]: empty model name"]


def test_overrides_are_checked_against_the_monitor_they_change(tmp_path: Path) -> None:
    text = HEAD.replace("version: 1\n", "version: 1\nmodels: 'shop-*'\n") + (
        "overrides:\n"
        "  'shop-eu-*':\n"
        "    perf: {threshold: high, windw: 3, window: {events: 0}}\n"
        "    pref: {threshold: 0.5}\n"
        "  'shop-1': {perf: {kind: adwin}}\n"
    )
    assert errors(tmp_path, text) == [
        "p.yaml:7:23: overrides.shop-eu-*.perf.threshold: Input should be a valid number, unable to parse string "
        "as a number",
        "p.yaml:7:29: overrides.shop-eu-*.perf.windw: unknown parameter 'windw' of a performance monitor; "
        "allowed: kind, metric, positive, threshold, tolerance, window",
        "p.yaml:7:56: overrides.shop-eu-*.perf.window.events: Input should be greater than or equal to 1",
        "p.yaml:8:5: overrides.shop-eu-*.pref: unknown monitor 'pref'; did you mean 'perf'? monitors: perf",
        "p.yaml:9:21: overrides.shop-1.perf.kind: an override cannot change a monitor's kind",
    ]


def test_the_more_specific_override_wins_key_by_key(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        HEAD.replace("version: 1\n", "version: 1\nmodels: 'shop-*'\n")
        + "overrides:\n  'shop-eu-1': {perf: {threshold: 0.6}}\n  'shop-*': {perf: {threshold: 0.7, metric: f1}}\n"
    )
    policy = load_policy(tmp_path / "p.yaml")
    eu1, other = bind(policy, "shop-eu-1").spec.monitors["perf"], bind(policy, "shop-2").spec.monitors["perf"]
    assert (eu1.threshold, eu1.metric, eu1.window.events) == (0.6, "f1", 100)
    assert (other.threshold, other.metric) == (0.7, "f1")
    assert policy.spec.monitors["perf"].threshold == 0.8, "the file's policy is unchanged"


def test_where_values_compare_as_text_and_all_must_match(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("version: 1\nmodels: '*'\nwhere: {tier: [1, 2], region: eu}\n")
    fleet = Fleet([load_policy(tmp_path / "p.yaml")])
    assert fleet.route("m", {"tier": 2, "region": "eu"}).policy is not None
    assert fleet.route("m", {"tier": "1", "region": "eu"}).policy is not None
    assert fleet.route("m", {"tier": 3, "region": "eu"}).policy is None
    assert fleet.route("m", {"tier": 1}).reason == "its attributes match no policy's 'where'"
