"""Two retrain decisions of one model, racing: real trainer subprocesses, one of them slow.

Whatever order the trainers finish in, the champion is the model of the newer decision (both
pass their gate) and ``previous`` names the older one's: a model's lifecycle actions run one at
a time, in the order of its decisions (daemon/actions/runner.py)."""

from __future__ import annotations

import pickle
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from driftwarden.daemon.config import Settings
from driftwarden.daemon.io.sources import MemorySource
from driftwarden.daemon.runtime import Daemon
from driftwarden.deploy.registry import LocalRegistry
from driftwarden.deploy.targets import LocalTarget
from driftwarden.policies.engine import Decision
from driftwarden.policies.loader import load_policy

from tests.conftest import ROOT
from tests.daemon.test_lifecycle_runner import MODEL, events, seed_champion

SLOW = 2.0  # seconds the slow trainer sleeps: the fast one ends long before it
NEWER_UPTO = 479  # the last training row of the decision at event 599 (rows 480-599 are its held-out fifth)

TRAINER = """\
import pickle, sys, time
sys.path.insert(0, {root!r})
import pandas as pd
from tests.deploy.trainers import LinearRule

data, output, slow_below = sys.argv[1], sys.argv[2], int(sys.argv[3])
upto = int(pd.read_parquet(data)["__index"].max())
model = LinearRule()
model.trained_upto = upto  # which decision's rows made it
if upto < slow_below:
    time.sleep({slow})
with open(output + "/model.pkl", "wb") as f:
    pickle.dump(model, f)
"""


def write_policy(tmp: Path, slow_below: int) -> Path:
    script = tmp / "trainer.py"
    script.write_text(TRAINER.format(root=str(ROOT), slow=SLOW))
    command = [sys.executable, str(script), "{data}", "{output}", str(slow_below)]
    path = tmp / "policy.yaml"
    path.write_text(f"""version: 1
model: {MODEL}
monitors:
  perf: {{kind: performance, metric: accuracy, window: {{events: 100}}, threshold: 0.9}}
rules:
  - {{name: never, when: "perf.drift", require: "labels.count >= 1000000", do: retrain}}
actions:
  retrain:
    train: {{command: {command!r}, timeout: 60s}}
    data: {{last: 1000}}
    metrics: [accuracy]
    retries: 0
    promote_if: "candidate.accuracy >= champion.accuracy - 1.0"
    deploy: {{target: local, path: serving/{MODEL}}}
""")
    return path


def decision(at: int, n: int) -> Decision:
    return Decision(
        model=MODEL,
        rule="manual",
        action="retrain",
        action_type="retrain",
        at=at,
        ts=time.time(),
        key=f"{MODEL}/manual/{n}",
    )


@pytest.mark.parametrize("slow", ["older", "newer"])
def test_the_newest_decision_that_passed_its_gate_is_the_champion(tmp_path: Path, slow: str) -> None:
    state = tmp_path / "state"
    seed_champion(state)
    # the older decision trains on rows up to 319, the newer on rows up to 479 (the last fifth is held out)
    p = write_policy(tmp_path, slow_below=500 if slow == "older" else 10_000)
    seen: list[dict[str, Any]] = []
    daemon = Daemon(
        Settings(state_dir=state, batch_size=50),
        MemorySource(events(600, None)),
        [load_policy(p)],
        listener=seen.append,
    )
    try:
        daemon.run()
        daemon.decide([decision(399, 1), decision(599, 2)])
        assert daemon.actions.wait(timeout=60)
        actions = {a.key: a for a in daemon.store.actions(type="retrain")}
    finally:
        daemon.close()

    older, newer = actions[f"{MODEL}/manual/1"], actions[f"{MODEL}/manual/2"]
    assert older.state == newer.state == "deployed", (older.info.get("reason"), newer.info.get("reason"))
    registry = LocalRegistry(state / "registry")
    aliases = registry.aliases(MODEL)
    assert aliases == {"champion": newer.version, "previous": older.version}
    assert registry.load(MODEL, aliases["champion"]).trained_upto == NEWER_UPTO
    assert registry.get(MODEL, newer.version).metadata["decision"] == newer.key
    served = pickle.loads((LocalTarget(state / "serving" / MODEL).path / "model.pkl").read_bytes())
    assert served.trained_upto == NEWER_UPTO
    # the newer decision's gate compared with the older one's model, not with the seed
    assert newer.info["champion_version"] == older.version and older.info["champion_version"] == "v0001"
    # one at a time: the newer one started training only after the older one was deployed
    steps = [(s["key"], s["state"]) for s in seen if s["type"] == "action"]
    assert steps.index((older.key, "deployed")) < steps.index((newer.key, "training"))
