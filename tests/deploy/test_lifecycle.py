"""retrain / rollback end to end: real trainer subprocesses, real registry and target."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from driftwarden.deploy.gate import holdout_split, improves
from driftwarden.deploy.lifecycle import Outcome, RetrainSpec, retrain, rollback
from driftwarden.deploy.registry import LocalRegistry, ModelVersion
from driftwarden.deploy.targets import LocalTarget
from sklearn.dummy import DummyClassifier
from sklearn.tree import DecisionTreeClassifier

from tests.deploy.trainers import FEATURES, make_data

ROOT = Path(__file__).resolve().parents[2]
DATA = make_data(400)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, state: str, info: dict[str, Any]) -> None:
        json.dumps(info)  # progress must be plain JSON
        self.events.append((state, info))

    @property
    def states(self) -> list[str]:
        return [s for s, _ in self.events]


class Env:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.registry = LocalRegistry(tmp_path / "registry")
        self.target = LocalTarget(tmp_path / "serving" / "churn")
        self.record = Recorder()
        self.sleeps: list[float] = []

    def seed_champion(self, estimator: Any) -> ModelVersion:
        """Register and deploy an in-process-fitted champion (no subprocess needed)."""
        train, _ = holdout_split(DATA, 0.2)
        model = estimator.fit(train[list(FEATURES)], train["__label"])
        art = self.tmp / f"seed-{len(self.registry.versions('churn'))}"
        art.mkdir()
        (art / "model.pkl").write_bytes(pickle.dumps(model))
        version = self.registry.register("churn", art, {"seeded": True})
        self.registry.set_alias("churn", "champion", version.version)
        self.target.deploy(version)
        return version

    def run(self, spec: RetrainSpec, workdir: str = "run", **kwargs: Any) -> Outcome:
        kwargs.setdefault("promote_if", improves("f1", by=0.01))
        return retrain(
            spec,
            "churn",
            kwargs.pop("data", DATA),
            self.tmp / workdir,
            self.registry,
            kwargs.pop("target", self.target),
            record=kwargs.pop("record", self.record),
            sleep=self.sleeps.append,
            **kwargs,
        )


def spec(entrypoint: str | None = None, **kw: Any) -> RetrainSpec:
    kw.setdefault("timeout", 60)
    kw.setdefault("backoff", 1.5)
    if entrypoint is not None:
        kw["entrypoint"] = f"tests.deploy.trainers:{entrypoint}"
    return RetrainSpec(cwd=ROOT, **kw)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def test_better_candidate_is_promoted_and_deployed(env: Env) -> None:
    old = env.seed_champion(DummyClassifier(strategy="most_frequent"))
    outcome = env.run(
        spec("fit_tree", params={"max_depth": 4}),
        lineage={"policy": "churn.yaml", "rule": "retrain-on-drift"},
    )
    assert outcome.state == "deployed", outcome.reason
    assert outcome.candidate is not None and outcome.champion is not None
    assert env.record.states == ["training", "evaluating", "promoted", "deploying", "deployed"]
    assert outcome.version == "v0002" and outcome.attempts == 1
    assert outcome.candidate["f1"] > outcome.champion["f1"] + 0.01
    assert env.registry.aliases("churn") == {"champion": "v0002", "previous": old.version}
    assert env.target.current() == "v0002"
    served = pickle.loads((env.target.path / "model.pkl").read_bytes())
    assert isinstance(served, DecisionTreeClassifier) and served.max_depth == 4
    meta = env.registry.get("churn", "v0002").metadata
    assert meta["rule"] == "retrain-on-drift" and meta["previous_champion"] == old.version
    assert meta["metrics"] == outcome.candidate and meta["data"]["rows"] == 320
    assert meta["train"]["fingerprint"] == meta["data"]["fingerprint"]
    assert meta["trainer"]["params"] == {"max_depth": 4}
    stored = json.loads((env.tmp / "run" / "outcome.json").read_text())
    assert Outcome.from_json(stored) == outcome


def test_first_model_is_promoted_without_a_champion(env: Env) -> None:
    outcome = env.run(spec("fit_tree"), target=None)
    assert outcome.state == "promoted" and outcome.champion is None, outcome.reason
    assert env.record.states == ["training", "evaluating", "promoted"]
    assert env.registry.aliases("churn") == {"champion": "v0001"}


def test_worse_candidate_is_rejected_and_nothing_moves(env: Env) -> None:
    env.seed_champion(DecisionTreeClassifier(max_depth=5, random_state=0))
    aliases_before = (env.tmp / "registry" / "churn" / "aliases.json").read_bytes()
    link_before = env.target.path.readlink()
    outcome = env.run(spec("fit_dummy"))
    assert outcome.state == "rejected" and outcome.version is None
    assert outcome.candidate is not None and outcome.champion is not None
    assert env.record.states == ["training", "evaluating", "rejected"]
    assert "candidate f1" in outcome.reason and outcome.candidate["f1"] < outcome.champion["f1"]
    assert (env.tmp / "registry" / "churn" / "aliases.json").read_bytes() == aliases_before
    assert env.target.path.readlink() == link_before and env.target.current() == "v0001"
    assert [v.version for v in env.registry.versions("churn")] == ["v0001"]


def test_trainer_that_raises_fails_permanently_without_retry(env: Env) -> None:
    env.seed_champion(DummyClassifier())
    counter = env.tmp / "count"
    outcome = env.run(spec("fit_raises", params={"counter": str(counter)}, retries=3))
    assert outcome.state == "failed" and outcome.attempts == 1
    assert "permanent, not retried" in outcome.reason and "boom" in outcome.reason
    assert counter.read_text() == "1" and env.sleeps == []
    assert env.record.states == ["training", "failed"]
    assert env.target.current() == "v0001" and env.registry.aliases("churn")["champion"] == "v0001"
    assert len(env.registry.versions("churn")) == 1


def test_timeouts_are_retried_with_backoff_then_fail(env: Env) -> None:
    env.seed_champion(DummyClassifier())
    cmd = "echo attempt >> {output}/../attempts.log; sleep 30"
    outcome = env.run(spec(command=cmd, timeout=0.5, retries=2, backoff=1.5))
    assert outcome.state == "failed" and outcome.attempts == 3
    assert "giving up after 3 tries" in outcome.reason and "timed out" in outcome.reason
    assert env.sleeps == [1.5, 3.0]
    assert len((env.tmp / "run" / "attempts.log").read_text().splitlines()) == 3
    training = [i for s, i in env.record.events if s == "training"]
    assert [i["attempt"] for i in training] == [1, 2, 3] and training[0]["retry"] is None
    assert training[2]["retry"]["waited"] == 3.0 and "timed out" in training[2]["retry"]["previous_error"]
    assert env.target.current() == "v0001" and len(env.registry.versions("churn")) == 1


def test_exit_75_is_retried_and_then_succeeds(env: Env) -> None:
    env.seed_champion(DummyClassifier(strategy="most_frequent"))
    params = {"counter": str(env.tmp / "count"), "fail_times": 1}
    outcome = env.run(spec("fit_tempfail", params=params, retries=2, backoff=2.0))
    assert outcome.state == "deployed" and outcome.attempts == 2, outcome.reason
    assert env.sleeps == [2.0] and env.target.current() == "v0002"


def test_holdout_rows_never_reach_the_trainer(env: Env) -> None:
    seen = env.tmp / "seen.json"
    data = DATA.copy()
    data.loc[data["__index"].isin([5, 395]), "__label"] = None  # unlabeled rows are dropped
    outcome = env.run(spec("fit_tree", params={"seen": str(seen)}, holdout=0.25), target=None, data=data)
    assert outcome.state == "promoted", outcome.reason
    got = json.loads(seen.read_text())
    _, held = holdout_split(data[data["__label"].notna()], 0.25)
    assert got["rows"] == 298 and got["columns"] == list(FEATURES) and 5 not in got["index"]
    assert set(got["index"]).isdisjoint(held["__index"]) and max(got["index"]) < held["__index"].min()
    meta = env.registry.get("churn", str(outcome.version)).metadata
    assert meta["data"]["holdout_index"] == [299, 399] and meta["data"]["train_index"] == [0, 298]
    assert meta["data"]["unlabeled_dropped"] == 2


def test_rollback_redeploys_the_previous_champion(env: Env) -> None:
    env.seed_champion(DummyClassifier(strategy="most_frequent"))
    assert env.run(spec("fit_tree")).state == "deployed"
    record = Recorder()
    outcome = rollback("churn", env.registry, env.target, record, reason="live f1 dropped")
    assert outcome.state == "rolled_back" and outcome.version == "v0001", outcome.reason
    assert record.states == ["rolling_back", "rolled_back"]
    assert env.target.current() == "v0001"
    assert env.registry.aliases("churn") == {"champion": "v0001", "rolled_back": "v0002"}
    again = rollback("churn", env.registry, env.target, record)
    assert again.state == "failed" and "no previous champion" in again.reason
    assert env.target.current() == "v0001"
    assert rollback("other", env.registry, None, record).state == "failed"


def test_a_finished_run_is_not_repeated(env: Env) -> None:
    first = env.run(spec("fit_tree"), target=None)
    events = len(env.record.events)
    assert env.run(spec("fit_tree"), target=None) == first
    assert len(env.record.events) == events and len(env.registry.versions("churn")) == 1


def test_no_exception_escapes(env: Env) -> None:
    def broken_record(state: str, info: dict[str, Any]) -> None:
        raise RuntimeError(f"store down at {state}")

    outcome = env.run(spec("fit_tree"), record=broken_record)
    assert outcome.state == "failed" and "store down at training" in outcome.reason

    def bad_rule(candidate: dict, champion: dict | None) -> bool:
        raise KeyError("champion.f1")

    rec = Recorder()
    env.seed_champion(DummyClassifier())
    outcome = env.run(spec("fit_tree"), "run2", promote_if=bad_rule, record=rec)
    assert outcome.state == "failed" and "while evaluating" in outcome.reason
    assert rec.states == ["training", "evaluating", "failed"]
    assert env.registry.aliases("churn")["champion"] == "v0001"

    outcome = env.run(spec("fit_tree"), "run3", data=DATA.drop(columns="__label"))
    assert outcome.state == "failed" and "__label" in outcome.reason


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        RetrainSpec(timeout=1)
    with pytest.raises(ValueError, match="holdout"):
        RetrainSpec(entrypoint="a:b", holdout=0)
    with pytest.raises(ValueError, match="retries"):
        RetrainSpec(entrypoint="a:b", retries=-1)
