"""A broken policy gives exactly the expected ``file:line:col`` lines, all of them, and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from driftwarden.daemon.cli import EXIT_INVALID, main
from driftwarden.policies.loader import PolicyLoadError, check_policy, load_policy

BASE = """\
version: 1
model: churn
monitors:
  inputs: {kind: feature_drift, window: {events: 100}}
  errors: {kind: adwin, series: error}
rules:
  - name: drift
    when: "inputs.drift && errors.drift"
    cooldown: 1h
    do: alert
  - name: weekly
    schedule: "0 3 * * SUN"
    do: retrain
actions:
  retrain:
    train: {entrypoint: "driftwarden.examples.credit.train:train"}
"""

# One mistake each: (replace this, by that) in BASE → the one expected error line.
MISTAKES = {
    "unknown_key": (
        "    cooldown: 1h",
        "    cooldwn: 1h",
        "9:5: rules[0].cooldwn: unknown key 'cooldwn'; did you mean 'cooldown'?",
    ),
    "unknown_monitor_param": (
        "series: error}",
        "series: error, delta: 0.01, clok: 5}",
        "5:53: monitors.errors.clok: unknown key 'clok'; did you mean 'clock'?",
    ),
    "bad_monitor_param_value": (
        "series: error}",
        "series: error, delta: 5}",
        "5:47: monitors.errors.delta: delta must be in (0, 1), got 5.0",
    ),
    "undefined_monitor": (
        '"inputs.drift && errors.drift"',
        '"inputs.drift && erors.drift"',
        "8:28: rules[0].when: unknown name 'erors'; did you mean 'errors'? monitors: errors, inputs; "
        "also available: events, labels, dead_letters, model, actions",
    ),
    "cel_syntax": (
        '"inputs.drift && errors.drift"',
        '"inputs.drift && && errors.drift"',
        "8:28: rules[0].when: CEL: syntax error: extraneous input '&&' expecting {'[', '{', '(', '.', '-', '!', "
        "'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}",
    ),
    "bad_duration": (
        "cooldown: 1h",
        "cooldown: 1 hour",
        "9:15: rules[0].cooldown: not a duration: '1 hour' (use a number and a unit: 30s, 10m, 6h, 1d, 1w)",
    ),
    "bad_cron": (
        '"0 3 * * SUN"',
        '"0 3 * * FUNDAY"',
        "12:15: rules[1].schedule: bad cron string '0 3 * * FUNDAY': Invalid weekday name \"FUNDAY\" "
        "(five fields: minute hour day month day-of-week, e.g. '0 3 * * SUN')",
    ),
    "unknown_monitor_kind": (
        "kind: adwin",
        "kind: adwn",
        "5:18: monitors.errors.kind: unknown monitor kind 'adwn'; did you mean 'adwin'?",
    ),
    "unknown_action": (
        "do: retrain",
        "do: retrian",
        "13:9: rules[1].do: unknown action 'retrian'; did you mean 'retrain'? actions: alert, retrain",
    ),
    "unknown_helper_monitor": (
        '"inputs.drift && errors.drift"',
        """'inputs.drift && fired_within("eror", "1h")'""",
        "8:41: rules[0].when: fired_within() names unknown monitor 'eror'; did you mean 'errors'? monitors: errors, inputs",
    ),
    "unknown_function": (
        '"inputs.drift && errors.drift"',
        """'inputs.drift && fired_witin("errors", "1h")'""",
        "8:28: rules[0].when: unknown function 'fired_witin'; did you mean 'fired_within'? helpers: fired_within, count, seconds",
    ),
    "unknown_inhibitor": (
        "    do: alert",
        "    inhibited_by: [retrian]\n    do: alert",
        "10:20: rules[0].inhibited_by[0]: unknown action 'retrian'; did you mean 'retrain'? use an action name or type: alert, retrain",
    ),
    "window_on_a_streaming_detector": (
        "series: error}",
        "series: error, window: {events: 10}}",
        "5:40: monitors.errors.window: a monitor of kind 'adwin' has no window: it updates on every event",
    ),
}

ALL = """\
version: 1
model: churn
monitors:
  inputs: {kind: feature_drift, window: {events: 100}, drift_shar: 0.3}
  errors: {kind: adwn, series: error}
  score: {kind: page_hinkley, series: score}
rules:
  - name: drift
    when: "inputs.drift && erors.drift"
    cooldwn: 1h
    do: alert
  - name: syntax
    when: "score.drift && && inputs.drift"
    cooldown: 1 hour
    do: alert
  - name: weekly
    schedule: "0 3 * * FUNDAY"
    do: retrian
actions:
  retrain:
    train: {entrypoint: "driftwarden.examples.credit.train:train"}
"""

ALL_ERRORS = [
    "4:56: monitors.inputs.drift_shar: unknown key 'drift_shar'; did you mean 'drift_share'?",
    "5:18: monitors.errors.kind: unknown monitor kind 'adwn'; did you mean 'adwin'?",
    "9:28: rules[0].when: unknown name 'erors'; did you mean 'errors'? monitors: errors, inputs, score; "
    "also available: events, labels, dead_letters, model, actions",
    "10:5: rules[0].cooldwn: unknown key 'cooldwn'; did you mean 'cooldown'?",
    "13:27: rules[1].when: CEL: syntax error: extraneous input '&&' expecting {'[', '{', '(', '.', '-', '!', "
    "'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}",
    "14:15: rules[1].cooldown: not a duration: '1 hour' (use a number and a unit: 30s, 10m, 6h, 1d, 1w)",
    "17:15: rules[2].schedule: bad cron string '0 3 * * FUNDAY': Invalid weekday name \"FUNDAY\" "
    "(five fields: minute hour day month day-of-week, e.g. '0 3 * * SUN')",
    "18:9: rules[2].do: unknown action 'retrian'; did you mean 'retrain'? actions: alert, retrain",
]


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _lines(path: Path) -> list[str]:
    return [f"{e.line}:{e.col}: {e.where}: {e.message}" for e in check_policy(path)]


def test_the_base_policy_is_valid(tmp_path: Path) -> None:
    assert check_policy(_write(tmp_path, "base.yaml", BASE)) == []


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_each_mistake_gives_exactly_its_line(tmp_path: Path, mistake: str) -> None:
    old, new, expected = MISTAKES[mistake]
    assert BASE.count(old) == 1
    path = _write(tmp_path, f"{mistake}.yaml", BASE.replace(old, new))
    assert _lines(path) == [expected]
    with pytest.raises(PolicyLoadError) as info:
        load_policy(path)
    assert [str(e) for e in info.value.errors] == [f"{path}:{expected}"]


def test_a_file_with_every_mistake_reports_all_of_them(tmp_path: Path) -> None:
    assert _lines(_write(tmp_path, "all.yaml", ALL)) == ALL_ERRORS


def test_validate_prints_every_error_and_exits_2(tmp_path: Path) -> None:
    bad = _write(tmp_path, "all.yaml", ALL)
    good = _write(tmp_path, "base.yaml", BASE)
    result = CliRunner().invoke(main, ["validate", str(good), str(bad)])
    assert result.exit_code == EXIT_INVALID
    assert result.stdout.splitlines() == [f"{bad}:{line}" for line in ALL_ERRORS]
    ok = CliRunner().invoke(main, ["validate", str(good)])
    assert ok.exit_code == 0, ok.output


@pytest.mark.parametrize("mistake", ["unknown_key", "cel_syntax", "unknown_monitor_kind"])
def test_validate_exits_2_for_each_mistake(tmp_path: Path, mistake: str) -> None:
    old, new, expected = MISTAKES[mistake]
    path = _write(tmp_path, "p.yaml", BASE.replace(old, new))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert (result.exit_code, result.stdout) == (EXIT_INVALID, f"{path}:{expected}\n")


def test_the_daemon_refuses_a_broken_policy_at_start(tmp_path: Path) -> None:
    bad = _write(tmp_path, "all.yaml", ALL)
    events = _write(tmp_path, "events.jsonl", '{"model": "churn", "id": "1", "prediction": 1}\n')
    result = CliRunner().invoke(
        main, ["run", "--policy", str(bad), "--events", str(events), "--state-dir", str(tmp_path / "state"), "--json"]
    )
    assert result.exit_code == EXIT_INVALID
    assert result.stderr.splitlines() == [f"{bad}:{line}" for line in ALL_ERRORS]
    assert not (tmp_path / "state").exists()


def test_a_cel_error_in_a_block_scalar_points_into_the_file(tmp_path: Path) -> None:
    text = BASE.replace(
        '    when: "inputs.drift && errors.drift"\n', "    when: |\n      inputs.drift\n        && && errors.drift\n"
    )
    [line] = _lines(_write(tmp_path, "p.yaml", text))
    assert line.startswith("10:12: rules[0].when: CEL: syntax error: extraneous input '&&'")


def test_yaml_syntax_errors_have_a_position(tmp_path: Path) -> None:
    lines = _lines(_write(tmp_path, "p.yaml", BASE.replace("do: alert", "do: [alert")))
    assert len(lines) == 1 and lines[0].startswith("11:") and "YAML" in lines[0]


def test_the_bare_key_on_is_explained(tmp_path: Path) -> None:
    text = BASE.replace("series: error}", "on: error}")
    assert _lines(_write(tmp_path, "p.yaml", text)) == [
        "5:25: monitors.errors.on: YAML reads the bare key 'on' as true; write 'series:' instead"
    ]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "my-monitor",
            "monitor name 'my-monitor' cannot be used in conditions; use letters, digits and '_' (e.g. my_monitor)",
        ),
        (
            "labels",
            "monitor name 'labels' is taken by the condition context (events, labels, dead_letters, model, "
            "actions, fired_within, count, seconds); choose another",
        ),
    ],
)
def test_monitor_names_must_be_usable_in_conditions(tmp_path: Path, name: str, message: str) -> None:
    text = BASE.replace("  inputs: {kind", f"  {name}: {{kind: adwin, series: score}}\n  inputs: {{kind")
    assert _lines(_write(tmp_path, "p.yaml", text)) == [f"4:3: monitors.{name}: {message}"]


def test_comprehension_variables_are_not_unknown_names(tmp_path: Path) -> None:
    text = BASE.replace(
        '"inputs.drift && errors.drift"', '"inputs.features.exists(f, inputs.features[f].drift) && labels.count > 0"'
    )
    assert _lines(_write(tmp_path, "p.yaml", text)) == []


def test_schedule_rules_reject_for(tmp_path: Path) -> None:
    text = BASE.replace("    do: retrain", "    for: 2 windows\n    do: retrain")
    assert _lines(_write(tmp_path, "p.yaml", text)) == [
        "13:10: rules[1].for: 'for' has no meaning on a scheduled rule; remove it"
    ]
