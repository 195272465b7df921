"""Issue 14, policies: the loader never raises, evaluation never crashes, hot reload never wedges (items 7-12)."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from driftwarden.daemon.cli import EXIT_INVALID, main
from driftwarden.daemon.config import Settings
from driftwarden.daemon.io.sources import MemorySource
from driftwarden.daemon.runtime import Daemon
from driftwarden.policies.conditions import Condition
from driftwarden.policies.loader import load_policy, load_text
from driftwarden.policies.watch import PolicyWatcher
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BOUND = 10.0
"""Seconds before a call counts as a hang (a load takes milliseconds)."""

GOOD = """version: 1
model: m
monitors:
  errors: {kind: adwin, series: error}
  perf: {kind: performance, metric: accuracy, window: {events: 20}, threshold: 0.5}
rules:
  - name: drop
    when: "perf.value < 0.9"
    do: alert
"""

BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)


def finishes(fn: Callable[[], Any], seconds: float = BOUND) -> Any:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s: a hang"
    return out[0] if out else None


HOSTILE = {
    "control character": GOOD.replace("model: m", "model: m\x07"),
    "deep nesting": "version: 1\nmodel: m\nx: " + "[" * 5000 + "]" * 5000 + "\n",
    "recursive alias": "version: 1\nmodel: m\nmonitors: &a {x: *a}\n",
    "bool tag": "version: 1\nmodel: !!bool maybe\n",
    "timestamp tag": "version: 1\nmodel: m\nreference: !!timestamp x\n",
    "python tag": "version: 1\nmodel: !!python/object/apply:os.system [echo hi]\n",
    "CEL error at column 70,000": GOOD.replace('"perf.value < 0.9"', '"' + " " * 70_000 + 'perf.value <"'),
    "alias bomb": "version: 1\nmodel: m\n" + BOMB,
    "duplicate key": GOOD.replace("model: m\n", "model: m\nmodel: n\n"),
    "path in model": GOOD.replace("model: m", 'model: "../../x"'),
    "absolute model": GOOD.replace("model: m", "model: /tmp/x"),
    "NUL in model": GOOD.replace("model: m", 'model: "m\\0"'),
    "for: true": GOOD.replace("do: alert", "do: alert\n    for: true"),
    "window of booleans": GOOD.replace("{events: 20}", "{events: true}"),
    "window of 10^12 events": GOOD.replace("{events: 20}", "{events: 1000000000000}"),
    "misspelled per-feature method": GOOD.replace(
        "monitors:\n", "monitors:\n  d: {kind: feature_drift, features: all, per_feature: {x: {method: kss}}}\n"
    ),
    "costly condition": GOOD.replace(
        '"perf.value < 0.9"',
        '"size([0,1,2,3,4,5,6,7,8,9].map(a, [0,1,2,3,4,5,6,7,8,9].map(b, [0,1,2,3,4,5,6,7,8,9].map(c, '
        '[0,1,2,3,4,5,6,7,8,9].map(d, [0,1,2,3,4,5,6,7,8,9].map(e, 1)))))) > 0"',
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_policy_is_refused_with_a_position_and_exit_2(tmp_path: Path, name: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(HOSTILE[name])
    policy, errors = finishes(lambda: load_text(path))
    assert policy is None and errors
    assert all(e.line >= 1 and e.col >= 1 and e.message for e in errors)
    result = finishes(lambda: CliRunner().invoke(main, ["validate", str(path)]))
    assert result.exit_code == EXIT_INVALID, result.output
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: ", result.stdout)


def test_a_non_utf8_or_oversized_policy_is_refused_with_a_position(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(b"version: 1\nmodel: m\xff\n")
    (e,) = load_text(path)[1]
    assert (e.line, e.col, "UTF-8" in e.message) == (2, 9, True)
    path.write_text("version: 1\nmodel: m\n" + "#" * 300_000 + "\n")
    (e,) = load_text(path)[1]
    assert "limit" in e.message


# -- item 8: policies that validate, then crashed run and replay --------------------------------------


@pytest.mark.parametrize(
    "condition",
    ["labels.count / actions.alert.count > 10", "labels.count * 4611686018427387904 > 0", "perf.features.x.value > 1"],
)
def test_a_failing_condition_is_a_recorded_rule_error_not_a_crash(
    tmp_path: Path, condition: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(GOOD.replace('"perf.value < 0.9"', f'"{condition}"'))
    policy = load_policy(path)  # it validates: the failure is at evaluation
    records = [orjson.dumps({"model": "m", "id": i, "prediction": 1, "label": i % 2}) for i in range(100)]
    out: list[dict[str, Any]] = []
    d = Daemon(Settings(state_dir=tmp_path / "s", execute=False), MemorySource(records), [policy], listener=out.append)
    with caplog.at_level(logging.WARNING, logger="driftwarden"):
        stats = finishes(d.run)
    d.close()
    errors = [o for o in out if o["type"] == "signal" and o["kind"] == "rule_error"]
    assert stats.events == 100 and len(errors) == 5  # one per window of 20 labeled events
    assert errors[0]["rule"] == "drop" and errors[0]["where"] == f"{path}:7"
    assert d.pipelines["m"].engine.condition_errors == 5
    assert any(f"{path}:7" in r.getMessage() for r in caplog.records)


def test_a_costly_condition_is_refused_and_an_allowed_one_evaluates_quickly() -> None:
    lists = ", ".join(["[0,1,2,3,4,5,6,7,8,9]"] * 1)
    allowed = Condition(f"size({lists}.map(a, [0,1,2,3,4,5,6,7,8,9].map(b, a + b))) > 0")
    started = time.perf_counter()
    assert allowed.evaluate({}) is True
    assert time.perf_counter() - started < BOUND


# -- item 9: hot reload of broken files -------------------------------------------------------------


@pytest.mark.parametrize(
    "broken",
    [
        BOMB.encode(),
        b"version: 1\nmodel: m\xff\n",
        b"version: 1\nmodel: m\x00\n",
        b"version: 1\nmodel: m\nmonitors: &a {x: *a}\n",
        ("version: 1\nmodel: m\nx: " + "[" * 3000 + "]" * 3000).encode(),
        b"version: 1\nmodel: !!bool maybe\n",
    ],
)
def test_hot_reload_refuses_a_broken_file_and_the_old_policy_keeps_running(
    tmp_path: Path, broken: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    out: list[dict[str, Any]] = []
    source = MemorySource(closed=False)
    d = Daemon(
        Settings(state_dir=tmp_path / "s", execute=False),
        source,
        [load_policy(path)],
        listener=out.append,
        watch_policies=True,
    )
    path.write_bytes(broken)
    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    with caplog.at_level(logging.ERROR, logger="driftwarden"):
        finishes(d.reload_policies)
    source.push([orjson.dumps({"model": "m", "id": i, "prediction": 1, "label": 1}) for i in range(40)])
    source.close_input()
    stats = finishes(d.run)
    d.close()
    (refused,) = [o for o in out if o["type"] == "policy"]
    assert refused["state"] == "refused" and re.match(rf"{re.escape(str(path))}:\d+:\d+: ", refused["errors"][0])
    assert stats.events == 40 and d.policies["m"].digest != "" and "perf" in d.pipelines["m"].engine.monitors
    assert any("refused" in r.getMessage() for r in caplog.records)


def test_the_watcher_reports_a_non_utf8_file_instead_of_ignoring_it(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    w = PolicyWatcher([path])
    path.write_bytes(b"version: 1\nmodel: \xff\n")
    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    (change,) = w.changes()
    assert change.policy is None and "UTF-8" in change.errors[0].message
    assert w.changes() == []  # reported once, not again until the file changes


# -- item 10: a model name that is a path --------------------------------------------------------------


def test_an_event_whose_model_is_a_path_is_a_dead_letter(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    records = [orjson.dumps({"model": m, "id": 1, "prediction": 1}) for m in ("../../x", "/etc/x", "m\x00", "a\\b")]
    d = Daemon(Settings(state_dir=tmp_path / "s", execute=False), MemorySource(records), [load_policy(path)])
    stats = finishes(d.run)
    d.close()
    letters = [orjson.loads(x) for x in (tmp_path / "s" / "dead_letters.jsonl").read_bytes().splitlines()]
    assert stats.dead_letters == 4 and {x["code"] for x in letters} == {"bad_name"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.yaml", "s"]


# -- fuzz: mutated policies ---------------------------------------------------------------------------

_INSERTS = st.sampled_from(
    [
        "\x00",
        "\x1b",
        "&a ",
        "*a",
        "!!bool ",
        "!!timestamp ",
        "!!binary ",
        "!!python/name:os.system ",
        "!x ",
        "[",
        "]",
        "{",
        "}",
        ": ",
        "\n  ",
        "- ",
        "'",
        '"',
        "<<: *a\n",
        "%YAML 1.1\n",
        "---\n",
        "|\n",
        " / 0",
        " * 4611686018427387904",
        "\ufeff",
    ]
)


@settings(max_examples=120, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=len(GOOD)), _INSERTS), min_size=1, max_size=6))
def test_fuzzed_policies_never_raise_and_every_refusal_has_a_position(edits: list[tuple[int, str]]) -> None:
    text = GOOD
    for at, piece in sorted(edits, reverse=True):
        text = text[:at] + piece + text[at:]
    started = time.perf_counter()
    policy, errors = load_text(Path("fuzz.yaml"), text)
    assert time.perf_counter() - started < 2.0
    assert (policy is None) == bool(errors)
    assert all(e.line >= 1 and e.col >= 1 and e.message for e in errors)
