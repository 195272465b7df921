"""Every example policy loads, validates, satisfies the exported JSON Schema and replays on a
generated stream, firing its rules after the drift and never before it."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import numpy as np
import orjson
import pytest
import yaml
from click.testing import CliRunner
from driftwarden.daemon.cli import main
from driftwarden.policies.loader import load_policy
from driftwarden.policies.schema import json_schema

from tests.conftest import json_lines

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "policies" / "examples").glob("*.yaml"))
ALL_POLICIES = EXAMPLES + [
    ROOT / "examples" / "credit" / "policy.yaml",
    *sorted((ROOT / "examples").glob("*/policy.yaml")),
]
ONSET = 2000
N = 4000
T0 = 1_700_000_000.0

# Rules each example must fire after ONSET (all of its rules must stay quiet before it).
EXPECTED = {
    "drift-alerts.yaml": {"inputs-drifted", "pricing-moved"},
    "retrain.yaml": {"retrain-on-degradation", "early-retrain-trial", "concept-drift"},
    "bias.yaml": {"parity-gap"},
}


def churn_events(n: int = N, onset: int = ONSET, seed: int = 11) -> list[bytes]:
    """A churn model's predictions with labels; at ``onset`` prices, plans, scores, accuracy and the
    approval rate of one region all change."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        after = i >= onset
        region = "eu" if rng.random() < 0.5 else "us"
        accurate = rng.random() < (0.6 if after else 0.95)
        approve_rate = (0.2 if region == "eu" else 0.6) if after else 0.4
        prediction = int(rng.random() < approve_rate)
        out.append(
            orjson.dumps(
                {
                    "model": "churn",
                    "id": f"p{i}",
                    "ts": T0 + i,
                    "features": {
                        "tenure": float(rng.integers(1, 72)),
                        "monthly_charges": float(rng.normal(95 if after else 65, 10)),
                        "plan": str(
                            rng.choice(["basic", "pro", "max"], p=[0.2, 0.3, 0.5] if after else [0.5, 0.3, 0.2])
                        ),
                    },
                    "attributes": {"region": region},
                    "prediction": prediction,
                    "score": float(np.clip(rng.normal(0.7 if after else 0.4, 0.05), 0, 1)),
                    "label": prediction if accurate else 1 - prediction,
                }
            )
        )
    return out


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stream") / "events.jsonl"
    path.write_bytes(b"\n".join(churn_events()) + b"\n")
    return path


def test_there_are_examples() -> None:
    assert {p.name for p in EXAMPLES} == set(EXPECTED)


def test_the_schema_is_a_valid_json_schema_that_every_policy_satisfies() -> None:
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0
    schema = orjson.loads(result.stdout)
    assert schema == orjson.loads(orjson.dumps(json_schema()))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in ALL_POLICIES:
        errors = [
            f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(yaml.safe_load(path.read_text()))
        ]
        assert errors == [], path


def test_the_schema_rejects_what_the_loader_rejects() -> None:
    validator = jsonschema.Draft202012Validator(json_schema())
    good = {"version": 1, "model": "m", "monitors": {"e": {"kind": "adwin", "series": "error"}}, "rules": []}
    assert validator.is_valid(good)
    for bad in (
        {"kind": "adwin", "series": "error", "clok": 5},  # unknown parameter of the kind
        {"kind": "adwn", "series": "error"},  # unknown kind
        {"kind": "adwin"},  # required parameter missing
        {"kind": "adwin", "series": "error", "window": {"events": 10}},
    ):  # not windowed
        assert not validator.is_valid({**good, "monitors": {"e": bad}}), bad


def test_the_schema_exposes_each_kinds_parameters() -> None:
    defs = json_schema()["$defs"]
    adwin = defs["Monitor_adwin"]
    assert adwin["required"] == ["kind", "series"] and adwin["additionalProperties"] is False
    assert adwin["properties"]["clock"]["default"] == 32 and adwin["properties"]["clock"]["description"]
    assert adwin["properties"]["delta"]["default"] is None  # the series decides: 0.002, or 0.05 on 0/1 series
    assert "0.05 on 0/1 series" in adwin["properties"]["delta"]["description"]
    assert "window" in defs["Monitor_feature_drift"]["properties"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_example_validates(path: Path) -> None:
    load_policy(path)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_example_replays(path: Path, events: Path) -> None:
    result = CliRunner().invoke(main, ["replay", "--policy", str(path), "--events", str(events), "--json"])
    assert result.exit_code == 0, result.output
    lines = json_lines(result.stdout)
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["events"] == N and summary["labels_joined"] == N
    decisions = [d for d in lines if d["type"] == "decision"]
    assert summary["decisions"] == len(decisions)
    assert not [line for line in lines if line["type"] == "action"], "replay executes nothing"
    rules = {r["rule"]: r for r in summary["rules"]}
    assert set(rules) == {r.name for r in load_policy(path).spec.rules}
    for name, r in rules.items():
        ats = [d["at"] for d in decisions if d["rule"] == name]
        assert (r["firings"], r["first_at"], r["last_at"]) == (len(ats), min(ats, default=None), max(ats, default=None))
        assert r["first_at"] is None or r["first_at"] >= ONSET, f"{name} fired before the drift"
    fired = {name for name, r in rules.items() if r["firings"]}
    assert EXPECTED[path.name] <= fired


def test_the_replay_table_says_what_would_have_been_done(events: Path) -> None:
    path = ROOT / "policies" / "examples" / "retrain.yaml"
    result = CliRunner().invoke(
        main, ["replay", "--policy", str(path), "--events", str(events)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    table = result.stdout[result.stdout.index("rules") :]
    rows = {
        line.split("│")[2].strip(): [c.strip() for c in line.split("│")[3:7]]
        for line in table.splitlines()
        if line.startswith("│")
    }
    assert rows["early-retrain-trial"][3] == "retrain, dry run"
    assert rows["retrain-on-degradation"][0] == "1" and int(rows["retrain-on-degradation"][1]) >= ONSET
    assert rows["weekly"] == ["0", "-", "-", "retrain"]
