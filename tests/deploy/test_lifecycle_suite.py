"""The whole lifecycle — gate, significance, fairness, retries, deploy targets, shadow,
verification and rollback — against both registries (``registry`` is parametrized over the
local directory registry and MLflow's, see conftest.py).

Trainers are real subprocesses, but cheap ones: a command that copies a model pickled here
(:class:`tests.deploy.trainers.LinearRule`, exact and deterministic), so the suite stays fast
while every part of the machinery runs for real.
"""

from __future__ import annotations

import json
import pickle
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from driftwarden.deploy.gate import Fairness, Significance, improves
from driftwarden.deploy.lifecycle import Outcome, RetrainSpec, deploy_version, judge, retrain, rollback, verify
from driftwarden.deploy.registry import ModelVersion
from driftwarden.deploy.targets import HttpTarget, LocalTarget

from tests.deploy.trainers import LinearRule, make_data

MODEL = "churn"
NEW_WORLD = make_data(400)  # label = x0 + x1 > 0
OLD_WORLD = NEW_WORLD.assign(__label=(NEW_WORLD.x0 - NEW_WORLD.x1 > 0).astype(int))


def live(world: pd.DataFrame, n: int = 200, seed: int = 5) -> pd.DataFrame:
    rows = make_data(n, seed=seed).assign(__index=lambda d: d["__index"] + 10_000)
    if world is OLD_WORLD:
        rows["__label"] = (rows.x0 - rows.x1 > 0).astype(int)
    return rows


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, state: str, info: dict[str, Any]) -> None:
        json.dumps(info)
        self.events.append((state, info))

    @property
    def states(self) -> list[str]:
        return [s for s, _ in self.events]


class Env:
    def __init__(self, tmp: Path, registry: Any) -> None:
        self.tmp, self.registry = tmp, registry
        self.target = LocalTarget(tmp / "serving" / MODEL)
        self.record = Recorder()
        self.sleeps: list[float] = []

    def pickle(self, model: Any, name: str) -> Path:
        path = self.tmp / "models" / f"{name}.pkl"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(pickle.dumps(model))
        return path

    def champion(self, model: Any) -> ModelVersion:
        art = self.tmp / f"seed-{len(self.registry.versions(MODEL))}"
        art.mkdir()
        (art / "model.pkl").write_bytes(pickle.dumps(model))
        version = self.registry.register(MODEL, art, {"seeded": True})
        self.registry.set_alias(MODEL, "champion", version.version)
        self.target.deploy(version)
        return version

    def spec(self, candidate: Any, **kw: Any) -> RetrainSpec:
        kw.setdefault("command", ["cp", str(self.pickle(candidate, "candidate")), "{output}/model.pkl"])
        kw.setdefault("timeout", 30)
        kw.setdefault("backoff", 0.5)
        kw.setdefault("metrics", ("accuracy", "f1"))
        return RetrainSpec(**kw)

    def retrain(self, spec: RetrainSpec, workdir: str = "run", **kw: Any) -> Outcome:
        return retrain(
            spec,
            MODEL,
            kw.pop("data", NEW_WORLD),
            self.tmp / workdir,
            self.registry,
            kw.pop("target", self.target),
            kw.pop("promote_if", improves("accuracy", by=0.01)),
            self.record,
            lineage={"decision": f"{MODEL}/r/1"},
            sleep=self.sleeps.append,
            **kw,
        )

    def served(self) -> Any:
        return pickle.loads((self.target.path / "model.pkl").read_bytes())


@pytest.fixture
def env(tmp_path: Path, registry: Any) -> Env:
    return Env(tmp_path, registry)


def worse_than_old_world(live: dict, champion: dict | None, candidate: dict | None) -> bool:
    return champion is not None and live["accuracy"] < champion["accuracy"] - 0.05


# -- the gate ------------------------------------------------------------------------------------


def test_better_candidate_is_promoted_and_deployed(env: Env) -> None:
    old = env.champion(LinearRule(1.0, -1.0))
    outcome = env.retrain(env.spec(LinearRule()))
    assert outcome.state == "deployed", outcome.reason
    assert env.record.states == ["training", "evaluating", "promoted", "deploying", "deployed"]
    assert outcome.candidate["accuracy"] == 1.0 and outcome.champion["accuracy"] < 0.7
    assert env.registry.aliases(MODEL) == {"champion": "v0002", "previous": old.version}
    assert env.target.current() == "v0002" and env.served().w1 == 1.0
    meta = env.registry.get(MODEL, "v0002").metadata
    assert meta["decision"] == f"{MODEL}/r/1" and meta["parent"] == old.version
    assert meta["metrics"] == outcome.candidate and meta["data"]["rows"] == 320
    assert [v.version for v in env.registry.versions(MODEL)] == ["v0001", "v0002"]


def test_worse_candidate_is_rejected_and_nothing_is_deployed(env: Env) -> None:
    env.champion(LinearRule())
    outcome = env.retrain(env.spec(LinearRule(1.0, -1.0)))
    assert outcome.state == "rejected" and outcome.version is None
    assert env.record.states == ["training", "evaluating", "rejected"]
    assert env.registry.aliases(MODEL) == {"champion": "v0001"} and env.target.current() == "v0001"
    assert len(env.registry.versions(MODEL)) == 1


def test_not_significantly_better_is_rejected(env: Env) -> None:
    env.champion(LinearRule(1.0, 0.7))  # wrong on 3 of the 80 held-out rows
    promote_if = improves("accuracy", by=0.0)
    outcome = env.retrain(env.spec(LinearRule(), significance=Significance("mcnemar")), promote_if=promote_if)
    assert outcome.state == "rejected", outcome.reason
    assert outcome.candidate["accuracy"] > outcome.champion["accuracy"]  # promote_if alone would promote
    assert "mcnemar" in outcome.reason and "not significant" in outcome.reason
    checks = env.record.events[-1][1]["checks"]["significance"]
    assert checks["only_champion_right"] == 0 and 0 < checks["only_candidate_right"] < 5
    assert env.target.current() == "v0001" and len(env.registry.versions(MODEL)) == 1
    # The same improvement is significant for a champion that is clearly worse, by both tests.
    for test in ("mcnemar", "bootstrap"):
        env.champion(LinearRule(1.0, 0.2))
        spec = env.spec(LinearRule(), significance=Significance(test, seed=3))
        assert env.retrain(spec, f"run-{test}", promote_if=promote_if).state == "deployed"


def test_candidate_that_widens_a_group_gap_is_rejected(env: Env) -> None:
    data = NEW_WORLD.assign(__attr_region=["north" if x > 0 else "south" for x in NEW_WORLD.x2])
    env.champion(LinearRule(1.0, -1.0))
    biased = LinearRule(favor=0.8)  # more accurate than the champion, but favours the north
    fairness = Fairness("region", max_increase=0.15)
    outcome = env.retrain(env.spec(biased, fairness=fairness), data=data)
    assert outcome.state == "rejected", outcome.reason
    assert outcome.candidate["accuracy"] > outcome.champion["accuracy"] + 0.01
    check = env.record.events[-1][1]["checks"]["fairness"]
    assert check["candidate_gap"] > check["champion_gap"] + 0.15 and "region parity gap" in outcome.reason
    assert env.target.current() == "v0001"
    fair = env.retrain(env.spec(LinearRule(), fairness=fairness), "fair", data=data)
    assert fair.state == "deployed", fair.reason
    trained_on = pd.read_parquet(env.tmp / "fair" / "train.parquet").columns
    assert "__attr_region" not in trained_on  # attributes are for the gate, never model inputs


# -- trainers that fail ----------------------------------------------------------------------------


def test_permanent_failure_is_not_retried_and_deploys_nothing(env: Env) -> None:
    env.champion(LinearRule(1.0, -1.0))
    cmd = "echo run >> {output}/../runs.log; exit 3"
    outcome = env.retrain(env.spec(None, command=cmd, retries=3))
    assert outcome.state == "failed" and "permanent, not retried" in outcome.reason
    assert (env.tmp / "run" / "runs.log").read_text().count("run") == 1 and env.sleeps == []
    assert env.target.current() == "v0001" and len(env.registry.versions(MODEL)) == 1


def test_timeout_is_retried_then_fails_and_deploys_nothing(env: Env) -> None:
    env.champion(LinearRule(1.0, -1.0))
    cmd = "echo run >> {output}/../runs.log; sleep 20"
    outcome = env.retrain(env.spec(None, command=cmd, timeout=0.3, retries=1))
    assert outcome.state == "failed" and "giving up after 2 tries" in outcome.reason
    assert (env.tmp / "run" / "runs.log").read_text().count("run") == 2 and env.sleeps == [0.5]
    assert env.target.current() == "v0001" and env.registry.aliases(MODEL) == {"champion": "v0001"}


def test_temporary_failure_is_retried_and_then_deploys(env: Env) -> None:
    env.champion(LinearRule(1.0, -1.0))
    model = env.pickle(LinearRule(), "good")
    once = "{output}/../once"
    cmd = f"if [ -e {once} ]; then cp {model} {{output}}/model.pkl; else touch {once}; exit 75; fi"
    outcome = env.retrain(env.spec(None, command=cmd, retries=2))
    assert outcome.state == "deployed" and outcome.attempts == 2, outcome.reason
    assert env.sleeps == [0.5] and env.target.current() == "v0002"


# -- deploy targets ------------------------------------------------------------------------------


class Hook:
    """A model server's reload and health endpoints; ``healthy=False`` makes health fail."""

    def __init__(self, serving: Path) -> None:
        self.serving, self.healthy, self.reloads = serving, True, []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802
                hook.reloads.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self._send(200, {"ok": True})

            def do_GET(self) -> None:  # noqa: N802
                version = (hook.serving / "VERSION").read_text().strip()
                self._send(200 if hook.healthy else 500, {"version": version})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hook(env: Env) -> Iterator[Hook]:
    h = Hook(env.target.path)
    yield h
    h.server.shutdown()
    h.server.server_close()


def test_http_target_reloads_the_server_and_checks_health(env: Env, hook: Hook) -> None:
    env.champion(LinearRule(1.0, -1.0))
    target = HttpTarget(env.target, f"{hook.url}/reload", f"{hook.url}/health", timeout=5)
    outcome = env.retrain(env.spec(LinearRule()), target=target)
    assert outcome.state == "deployed", outcome.reason
    assert hook.reloads == [{"model": MODEL, "version": "v0002", "path": str(env.target.path)}]


def test_http_target_that_fails_health_switches_back_and_moves_no_alias(env: Env, hook: Hook) -> None:
    env.champion(LinearRule(1.0, -1.0))
    hook.healthy = False
    target = HttpTarget(env.target, f"{hook.url}/reload", f"{hook.url}/health", timeout=5)
    outcome = env.retrain(env.spec(LinearRule()), target=target)
    assert outcome.state == "failed" and "answered 500" in outcome.reason and "back to v0001" in outcome.reason
    assert env.target.current() == "v0001" and env.served().w1 == -1.0
    assert [r["version"] for r in hook.reloads] == [
        "v0002",
        "v0001",
    ]  # the server reloaded the old one
    assert env.registry.aliases(MODEL)["champion"] == "v0001"


def test_an_interrupted_deploy_is_finished_idempotently(env: Env) -> None:
    old = env.champion(LinearRule(1.0, -1.0))
    art = env.tmp / "cand"
    art.mkdir()
    (art / "model.pkl").write_bytes(pickle.dumps(LinearRule()))
    new = env.registry.register(MODEL, art, {"previous_champion": old.version})
    env.target.deploy(new)  # the switch happened; the daemon died before moving the alias
    for _ in range(2):
        outcome = deploy_version(MODEL, new.version, old.version, env.registry, env.target, env.record)
        assert outcome.state == "deployed", outcome.reason
    assert env.registry.aliases(MODEL) == {"champion": new.version, "previous": old.version}
    assert env.target.current() == new.version and len(env.target.history()) == 2


def test_a_candidate_whose_champion_was_replaced_during_its_gate_is_rejected_as_stale(env: Env) -> None:
    """The champion moves by compare-and-swap against the version the gate compared with: an
    operator's promote while the gate ran makes the candidate stale, and nothing it did moves."""
    old = env.champion(LinearRule(1.0, -1.0))
    art = env.tmp / "operator"
    art.mkdir()
    (art / "model.pkl").write_bytes(pickle.dumps(LinearRule(1.0, 0.5)))
    newer = env.registry.register(MODEL, art, {"by": "operator"})
    gate = improves("accuracy", by=0.01)

    def promote_meanwhile(candidate: dict[str, float], champion: dict[str, float] | None) -> bool:
        env.registry.move_champion(MODEL, newer.version, old.version)
        env.target.deploy(newer)
        return gate(candidate, champion)

    outcome = env.retrain(env.spec(LinearRule()), promote_if=promote_meanwhile)
    assert outcome.state == "rejected", outcome.reason
    assert outcome.reason.startswith(f"stale candidate: its gate compared it with {old.version}")
    assert env.record.events[-1][1]["stale"] is True
    assert env.registry.aliases(MODEL) == {"champion": newer.version, "previous": old.version}
    assert env.target.current() == newer.version


def test_a_resumed_deploy_of_a_stale_candidate_moves_nothing(env: Env) -> None:
    old = env.champion(LinearRule(1.0, -1.0))
    art = env.tmp / "cand"
    art.mkdir()
    (art / "model.pkl").write_bytes(pickle.dumps(LinearRule()))
    stale = env.registry.register(MODEL, art, {"previous_champion": old.version})
    newer = env.champion(LinearRule(1.0, 0.5))  # promoted after the stale one's gate ran
    outcome = deploy_version(MODEL, stale.version, old.version, env.registry, env.target, env.record)
    assert outcome.state == "rejected" and "stale candidate" in outcome.reason
    assert env.registry.aliases(MODEL)["champion"] == newer.version and env.target.current() == newer.version


def test_move_champion_is_a_compare_and_swap_that_keeps_previous(env: Env) -> None:
    art = env.tmp / "art"
    art.mkdir()
    (art / "model.pkl").write_bytes(pickle.dumps(LinearRule()))
    v1, v2, v3 = (env.registry.register(MODEL, art, {}).version for _ in range(3))
    assert env.registry.move_champion(MODEL, v1, None) is True
    assert env.registry.move_champion(MODEL, v2, None) is False  # compared with "no champion": stale
    assert env.registry.move_champion(MODEL, v2, v1) is True
    assert env.registry.move_champion(MODEL, v2, v1) is True  # repeated: already done
    assert env.registry.move_champion(MODEL, v3, v1) is False
    assert env.registry.aliases(MODEL) == {"champion": v2, "previous": v1}


# -- verification, rollback and shadow -------------------------------------------------------------


def test_deploy_that_falls_below_rollback_if_is_rolled_back(env: Env) -> None:
    env.champion(LinearRule(1.0, -1.0))
    assert env.retrain(env.spec(LinearRule())).state == "deployed"
    rec = Recorder()
    outcome = verify(
        MODEL,
        "v0002",
        "v0001",
        live(OLD_WORLD),
        worse_than_old_world,
        env.registry,
        env.target,
        rec,
        metrics=("accuracy",),
        workdir=env.tmp / "run",
    )
    assert outcome.state == "rolled_back" and outcome.version == "v0001", outcome.reason
    assert rec.states == ["rolling_back", "rolled_back"]
    assert outcome.candidate["accuracy"] < 0.7 and outcome.champion["accuracy"] == 1.0
    assert env.target.current() == "v0001" and env.served().w1 == -1.0
    assert env.registry.aliases(MODEL) == {"champion": "v0001", "rolled_back": "v0002"}
    again = verify(
        MODEL,
        "v0002",
        "v0001",
        live(OLD_WORLD),
        worse_than_old_world,
        env.registry,
        env.target,
        rec,
        workdir=env.tmp / "run",
    )
    assert again == outcome and rec.states == [
        "rolling_back",
        "rolled_back",
    ]  # stored, not repeated


def test_deploy_that_holds_up_live_is_verified(env: Env) -> None:
    env.champion(LinearRule(1.0, -1.0))
    assert env.retrain(env.spec(LinearRule())).state == "deployed"
    rec = Recorder()
    outcome = verify(
        MODEL,
        "v0002",
        "v0001",
        live(NEW_WORLD),
        worse_than_old_world,
        env.registry,
        env.target,
        rec,
        metrics=("accuracy",),
    )
    assert outcome.state == "verified" and rec.states == ["verified"], outcome.reason
    assert env.target.current() == "v0002" and env.registry.aliases(MODEL)["champion"] == "v0002"


def test_manual_rollback_walks_back(env: Env) -> None:
    env.champion(LinearRule(1.0, -1.0))
    assert env.retrain(env.spec(LinearRule())).state == "deployed"
    outcome = rollback(MODEL, env.registry, env.target, env.record, reason="by hand")
    assert outcome.state == "rolled_back" and env.target.current() == "v0001"
    assert rollback(MODEL, env.registry, env.target, env.record).state == "failed"


def test_shadow_candidate_is_judged_on_live_traffic(env: Env) -> None:
    env.champion(LinearRule(1.0, -1.0))
    spec = env.spec(LinearRule(), shadow=True)
    outcome = env.retrain(spec)
    assert outcome.state == "shadowing" and outcome.version == "v0002", outcome.reason
    assert env.record.states == ["training", "evaluating", "shadowing"]
    assert env.registry.aliases(MODEL) == {"champion": "v0001", "challenger": "v0002"}
    assert env.target.current() == "v0001"  # not served while in shadow
    # On live traffic from the old world the challenger loses: rejected, nothing moves.
    rec = Recorder()
    rejected = judge(
        spec,
        MODEL,
        "v0002",
        live(OLD_WORLD),
        env.tmp / "a",
        env.registry,
        env.target,
        improves("accuracy", by=0.01),
        rec,
    )
    assert rejected.state == "rejected" and rec.states == ["evaluating", "rejected"], rejected.reason
    assert env.registry.aliases(MODEL) == {"champion": "v0001"} and env.target.current() == "v0001"
    # Shadowed again, on new-world traffic it wins and is deployed.
    assert env.retrain(spec, "run2").state == "shadowing"
    rec = Recorder()
    won = judge(
        spec,
        MODEL,
        "v0003",
        live(NEW_WORLD),
        env.tmp / "b",
        env.registry,
        env.target,
        improves("accuracy", by=0.01),
        rec,
    )
    assert won.state == "deployed", won.reason
    assert rec.states == ["evaluating", "promoted", "deploying", "deployed"]
    assert rec.events[0][1]["on"] == "live" and rec.events[0][1]["rows"] == 200
    assert env.registry.aliases(MODEL) == {"champion": "v0003", "previous": "v0001"}
    assert env.target.current() == "v0003"
