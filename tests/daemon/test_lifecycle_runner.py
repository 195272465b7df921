"""The daemon runs the lifecycle on its own traffic: a decision retrains, the deploy is verified
on the labeled events that follow it and rolled back when ``rollback_if`` holds; a shadowed
candidate is judged on live events; a restart mid-verification resumes it; everything is in
the audit log and ``driftwarden history`` / ``models`` show it."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from click.testing import CliRunner
from driftwarden.daemon.cli import main as cli
from driftwarden.daemon.config import Settings
from driftwarden.daemon.io.sources import MemorySource
from driftwarden.daemon.runtime import Daemon
from driftwarden.daemon.state.store import ActionRecord, Store
from driftwarden.deploy.registry import LocalRegistry
from driftwarden.deploy.targets import LocalTarget
from driftwarden.policies.loader import load_policy

from tests.deploy.trainers import FEATURES, LinearRule

MODEL = "m"
DECISION_AFTER = 300  # labels needed before the retrain rule may fire


def events(n: int, revert_at: int | None, seed: int = 0) -> list[bytes]:
    """Predictions with their labels inline. Labels follow x0 + x1 > 0 (the "new world"); from
    ``revert_at`` on they go back to x0 - x1 > 0, the world the first champion was made for."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(FEATURES)))
    out = []
    for i in range(n):
        old = revert_at is not None and i >= revert_at
        label = int(x[i, 0] - x[i, 1] > 0) if old else int(x[i, 0] + x[i, 1] > 0)
        prediction = int(x[i, 0] - x[i, 1] > 0)  # what the first champion serves
        out.append(
            orjson.dumps(
                {
                    "model": MODEL,
                    "id": f"p{i}",
                    "ts": 1_800_000_000 + i,
                    "features": dict(zip(FEATURES, map(float, x[i]), strict=True)),
                    "prediction": prediction,
                    "label": label,
                }
            )
        )
    return out


def policy(tmp: Path, **action: str) -> Path:
    model = tmp / "candidate.pkl"
    model.write_bytes(pickle.dumps(LinearRule()))
    extra = "".join(f"    {k}: {v}\n" for k, v in action.items())
    path = tmp / "policy.yaml"
    path.write_text(f"""version: 1
model: {MODEL}
monitors:
  perf: {{kind: performance, metric: accuracy, window: {{events: 100}}, threshold: 0.9}}
rules:
  - name: retrain
    when: "perf.drift"
    require: "labels.count >= {DECISION_AFTER}"
    cooldown: 1d
    do: retrain
actions:
  retrain:
    train: {{command: [cp, "{model}", "{{output}}/model.pkl"], timeout: 30s}}
    data: {{last: 1000}}
    metrics: [accuracy]
    promote_if: "candidate.accuracy >= champion.accuracy + 0.05"
    deploy: {{target: local, path: serving/{MODEL}}}
{extra}""")
    return path


def seed_champion(state: Path) -> None:
    art = state / "seed"
    art.mkdir(parents=True)
    (art / "model.pkl").write_bytes(pickle.dumps(LinearRule(1.0, -1.0)))
    registry = LocalRegistry(state / "registry")
    v1 = registry.register(MODEL, art, {"source": "seed"})
    registry.set_alias(MODEL, "champion", v1.version)
    LocalTarget(state / "serving" / MODEL).deploy(v1)


def run(state: Path, policy_path: Path, records: list[bytes], count: int | None = None) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    daemon = Daemon(
        Settings(state_dir=state, batch_size=50),
        MemorySource(records),
        [load_policy(policy_path)],
        listener=seen.append,
        synchronous_actions=True,
    )
    daemon.run(count=count)
    daemon.close()
    return seen


def action_states(seen: list[dict[str, Any]]) -> list[str]:
    return [s["state"] for s in seen if s["type"] == "action"]


def retrain_action(state: Path) -> ActionRecord:
    store = Store(state / "state.db")
    try:
        (action,) = [a for a in store.actions() if a.type == "retrain"]
        return action
    finally:
        store.close()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    seed_champion(tmp_path / "state")
    return tmp_path / "state"


def test_a_deploy_that_fails_live_is_rolled_back(state: Path, tmp_path: Path) -> None:
    p = policy(tmp_path, rollback_if='"live.accuracy < champion.accuracy - 0.05"', verify="{window: 100}")
    seen = run(state, p, events(600, revert_at=DECISION_AFTER))
    assert action_states(seen) == [
        "training",
        "evaluating",
        "promoted",
        "deploying",
        "deployed",
        "verifying",
        "rolling_back",
        "rolled_back",
    ]
    action = retrain_action(state)
    assert action.state == "rolled_back" and action.version == "v0001"
    window = action.info["verify"]
    assert window["window"] == 100 and window["after"] >= action.at
    registry = LocalRegistry(state / "registry")
    assert registry.aliases(MODEL) == {"champion": "v0001", "rolled_back": "v0002"}
    assert LocalTarget(state / "serving" / MODEL).current() == "v0001"

    # The audit log has the decision and every step, with inputs and outcome.
    result = CliRunner().invoke(cli, ["history", "--state-dir", str(state), "--json"])
    assert result.exit_code == 0, result.output
    audit = [orjson.loads(line) for line in result.output.splitlines()]
    decision = next(a for a in audit if a["type"] == "decision")
    assert decision["key"] == action.key and decision["rule"] == "retrain"
    steps = [a for a in audit if a["type"] == "action" and a["key"] == action.key]
    assert [s["state"] for s in steps] == action_states(seen)
    assert steps[0]["data"]["rows"] > 0 and steps[0]["data"]["fingerprint"]
    assert "rollback_if holds on 100 live rows" in steps[-1]["reason"]
    listed = CliRunner().invoke(cli, ["models", "list", "--registry", str(state / "registry"), "--json"])
    rows = [orjson.loads(line) for line in listed.output.splitlines()]
    assert [(r["version"], r["aliases"]) for r in rows] == [
        ("v0001", ["champion"]),
        ("v0002", ["rolled_back"]),
    ]
    assert rows[1]["decision"] == action.key and rows[1]["parent"] == "v0001"


def test_a_deploy_that_holds_up_is_verified(state: Path, tmp_path: Path) -> None:
    p = policy(tmp_path, rollback_if='"live.accuracy < champion.accuracy - 0.05"', verify="{window: 100}")
    seen = run(state, p, events(600, revert_at=None))
    assert action_states(seen)[-3:] == ["deployed", "verifying", "verified"]
    assert LocalTarget(state / "serving" / MODEL).current() == "v0002"


def test_a_restart_during_verification_resumes_it(state: Path, tmp_path: Path) -> None:
    p = policy(tmp_path, rollback_if='"live.accuracy < champion.accuracy - 0.05"', verify="{window: 100}")
    records = events(600, revert_at=DECISION_AFTER)
    first = run(state, p, records, count=360)
    assert action_states(first)[-1] == "verifying"
    second = run(state, p, records)
    assert action_states(second) == ["rolling_back", "rolled_back"]
    assert retrain_action(state).attempts == 1  # trained once across the restart
    assert LocalTarget(state / "serving" / MODEL).current() == "v0001"


class ProcessDied(BaseException):
    """The daemon's process ends at this point (raised from its listener: nothing after it runs)."""


def test_a_restart_between_the_deploy_and_its_verification_starts_the_verification(state: Path, tmp_path: Path) -> None:
    p = policy(tmp_path, rollback_if='"live.accuracy < champion.accuracy - 0.05"', verify="{window: 100}")
    records = events(600, revert_at=DECISION_AFTER)

    def dies_once_deployed(item: dict[str, Any]) -> None:
        if item["type"] == "action" and item["state"] == "deployed":
            raise ProcessDied

    daemon = Daemon(
        Settings(state_dir=state, batch_size=50),
        MemorySource(records),
        [load_policy(p)],
        listener=dies_once_deployed,
        synchronous_actions=True,
    )
    with pytest.raises(ProcessDied):
        daemon.run()
    daemon.store.close()
    action = retrain_action(state)
    assert action.state == "deployed" and action.info["verify_window"] == 100 and "verify" not in action.info
    assert action.verification_due and not action.finished
    store = Store(state / "state.db")
    assert [a.key for a in store.unfinished_actions()] == [action.key]  # driftwarden status lists it
    store.close()

    second = run(state, p, records)
    assert action_states(second) == ["verifying", "rolling_back", "rolled_back"]
    assert retrain_action(state).attempts == 1
    assert LocalTarget(state / "serving" / MODEL).current() == "v0001"


def test_shadow_candidate_is_judged_on_live_traffic_before_serving(state: Path, tmp_path: Path) -> None:
    p = policy(tmp_path, shadow="{window: 100}")
    served: list[tuple[str, str | None]] = []
    target = LocalTarget(state / "serving" / MODEL)

    def listener(item: dict[str, Any]) -> None:
        if item["type"] == "action":
            served.append((item["state"], target.current()))

    daemon = Daemon(
        Settings(state_dir=state, batch_size=50),
        MemorySource(events(600, None)),
        [load_policy(p)],
        listener=listener,
        synchronous_actions=True,
    )
    daemon.run()
    daemon.close()
    assert [s for s, _ in served] == [
        "training",
        "evaluating",
        "shadowing",
        "evaluating",
        "promoted",
        "deploying",
        "deployed",
    ]
    assert dict(served)["shadowing"] == "v0001"  # registered as challenger, not served
    action = retrain_action(state)
    judged = [a for a in Store(state / "state.db").audit() if a.get("state") == "evaluating"][-1]
    assert judged["on"] == "live" and judged["rows"] == 100 and judged["live_index"][0] > action.at
    assert LocalRegistry(state / "registry").aliases(MODEL) == {
        "champion": "v0002",
        "previous": "v0001",
    }
    assert target.current() == "v0002"


def test_the_daemon_deploys_through_the_mlflow_registry_it_is_configured_with(tmp_path: Path) -> None:
    """``registry: mlflow:<uri>`` in the settings: the daemon reads the champion from MLflow's model
    registry and registers, promotes and deploys the candidate there (real MLflow, SQLite backend)."""
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    from driftwarden.deploy.mlflow_registry import MlflowRegistry

    location = f"mlflow:sqlite:///{tmp_path / 'mlflow.db'}"
    registry = MlflowRegistry(location.removeprefix("mlflow:"))
    art = tmp_path / "seed"
    art.mkdir()
    (art / "model.pkl").write_bytes(pickle.dumps(LinearRule(1.0, -1.0)))
    v1 = registry.register(MODEL, art, {"source": "seed"})
    registry.set_alias(MODEL, "champion", v1.version)
    state = tmp_path / "state"
    daemon = Daemon(
        Settings(state_dir=state, batch_size=50, registry=location),
        MemorySource(events(600, revert_at=None)),
        [load_policy(policy(tmp_path))],
        synchronous_actions=True,
    )
    daemon.run()
    daemon.close()

    assert retrain_action(state).state == "deployed"
    aliases = MlflowRegistry(location.removeprefix("mlflow:")).aliases(MODEL)
    assert aliases["champion"] != v1.version and aliases.get("previous") == v1.version
    assert not (state / "registry").exists()  # nothing went to the default local registry
    assert LocalTarget(state / "serving" / MODEL).current() == aliases["champion"]
