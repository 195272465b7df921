"""SIGKILL a real daemon process (``python -m driftwarden.daemon.cli run``) during training and during a
deploy, restart it, and check: exactly one training per decision, the serving directory held
one whole model at every moment, and registry and serving agree in the end."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from driftwarden.daemon.state.store import ActionRecord, Store
from driftwarden.deploy.registry import LocalRegistry

from tests.conftest import ROOT
from tests.daemon.test_lifecycle_runner import MODEL, events, seed_champion
from tests.deploy.trainers import LinearRule

DEADLINE = 40.0  # seconds to wait for the daemon to reach the state we kill it in


def write_policy(tmp: Path, train: str, deploy: str) -> Path:
    path = tmp / "policy.yaml"
    path.write_text(f"""version: 1
model: {MODEL}
monitors:
  perf: {{kind: performance, metric: accuracy, window: {{events: 100}}, threshold: 0.9}}
rules:
  - {{name: retrain, when: "perf.drift", require: "labels.count >= 300", cooldown: 1d, do: retrain}}
actions:
  retrain:
    train: {{command: {json.dumps(train)}, timeout: 60s}}
    data: {{last: 1000}}
    metrics: [accuracy]
    retries: 0
    promote_if: "candidate.accuracy >= champion.accuracy + 0.05"
    deploy: {deploy}
""")
    return path


class Setup:
    def __init__(self, tmp: Path) -> None:
        self.tmp, self.state = tmp, tmp / "state"
        seed_champion(self.state)
        self.events = tmp / "events.jsonl"
        self.events.write_bytes(b"\n".join(events(600, None)) + b"\n")
        self.model = tmp / "candidate.pkl"
        self.model.write_bytes(pickle.dumps(LinearRule()))
        self.markers = tmp / "markers"
        self.markers.mkdir()
        self.serving = self.state / "serving" / MODEL

    def trainer(self, sleep: float) -> str:
        """A command trainer: a marker per training, a sleep, the model, a marker at its end."""
        return (
            f"touch {self.markers}/trained-$$; sleep {sleep}; cp {self.model} {{output}}/model.pkl;"
            f" touch {self.markers}/completed-$$"
        )

    def start(self, policy: Path, name: str, **env: str) -> subprocess.Popen[bytes]:
        out = open(self.tmp / f"{name}.out", "wb")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "driftwarden.daemon.cli",
                "run",
                "--policy",
                str(policy),
                "--events",
                str(self.events),
                "--state-dir",
                str(self.state),
                "--json",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )

    def trainings(self) -> int:
        """Trainers started."""
        return len(list(self.markers.glob("trained-*")))

    def completed(self) -> int:
        """Trainers that ran to their end."""
        return len(list(self.markers.glob("completed-*")))

    def action(self) -> ActionRecord:
        store = Store(self.state / "state.db")
        try:
            (action,) = [a for a in store.actions() if a.type == "retrain"]
            return action
        finally:
            store.close()


def wait_for(condition: Callable[[], bool], what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the daemon exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def sigkill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


class ServingWatcher:
    """Reads the serving directory in a loop, as a model server would: every read must find
    one whole model (a VERSION and a model.pkl that unpickles)."""

    def __init__(self, serving: Path) -> None:
        self.serving, self.reads, self.errors, self.versions = serving, 0, [], set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                resolved = self.serving.resolve(strict=True)
                version = (resolved / "VERSION").read_text().strip()
                pickle.loads((resolved / "model.pkl").read_bytes())
                self.versions.add(version)
                self.reads += 1
            except Exception as e:  # noqa: BLE001 - every failure is a finding
                self.errors.append(f"{type(e).__name__}: {e}")
            time.sleep(0.002)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    yield Setup(tmp_path)


@pytest.mark.parametrize("trainer_ends", ["after the restart", "while the daemon is down", "killed with the daemon"])
def test_sigkill_during_training_adopts_the_trainer(setup: Setup, trainer_ends: str) -> None:
    """The trainer outlives a SIGKILLed daemon (its own session; pid and start time in the store); the
    restarted daemon adopts it — waits for a running one, or reads how a finished one ended — then gates
    and deploys its model: one training, one deploy, never a second trainer."""
    sleep = 4 if trainer_ends == "after the restart" else 1
    policy = write_policy(setup.tmp, setup.trainer(sleep=sleep), f"{{target: local, path: serving/{MODEL}}}")
    watcher = ServingWatcher(setup.serving)
    proc = setup.start(policy, "first")
    wait_for(lambda: setup.trainings() == 1 and "trainer" in setup.action().info, "the trainer started", proc)
    action = setup.action()
    assert action.state == "training"
    sigkill(proc)
    (attempt,) = (setup.state / "runs").glob("*/attempt-1")
    recorded = json.loads((attempt / "train.pid").read_text())
    assert {k: recorded[k] for k in ("pid", "ticks")} == {k: action.info["trainer"][k] for k in ("pid", "ticks")}
    trainer = recorded["pid"]
    assert alive(trainer)  # the trainer runs in its own session: it outlived the daemon
    if trainer_ends == "while the daemon is down":
        deadline = time.monotonic() + DEADLINE
        while not (attempt / "exit.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert json.loads((attempt / "exit.json").read_text())["returncode"] == 0
    elif trainer_ends == "killed with the daemon":  # a node's reboot, say: nothing records its end
        os.killpg(trainer, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while alive(trainer) and time.monotonic() < deadline:
            time.sleep(0.05)
    else:
        assert not (attempt / "exit.json").exists()

    restarted = setup.start(policy, "second")
    assert restarted.wait(timeout=90) == 0, (setup.tmp / "second.out").read_text()[-3000:]
    watcher.stop()
    assert not alive(trainer)
    action = setup.action()
    assert action.state == "deployed", action.info.get("reason")
    assert action.info["train"]["ok"] is True and setup.completed() == 1
    if trainer_ends == "killed with the daemon":  # it vanished without an exit record: trained again, once
        assert action.info["train"]["adopted"] is False and action.attempts == 2 and setup.trainings() == 2
    else:
        assert action.info["train"]["adopted"] is True and action.attempts == 1 and setup.trainings() == 1
    registry = LocalRegistry(setup.state / "registry")
    assert [v.version for v in registry.versions(MODEL)] == ["v0001", "v0002"]
    assert registry.aliases(MODEL) == {"champion": "v0002", "previous": "v0001"}
    assert (setup.serving / "VERSION").read_text().strip() == "v0002"
    assert watcher.errors == [] and watcher.reads > 0 and watcher.versions <= {"v0001", "v0002"}


STOP_TIMEOUT = 3.0  # the test's bound (the default is 10 s): a slow trainer runs far longer


def test_sigterm_during_training_stops_within_the_bound_and_the_next_start_adopts_the_trainer(setup: Setup) -> None:
    policy = write_policy(setup.tmp, setup.trainer(sleep=8), f"{{target: local, path: serving/{MODEL}}}")
    proc = setup.start(policy, "first", DRIFTWARDEN_STOP_TIMEOUT=str(STOP_TIMEOUT))
    wait_for(lambda: setup.trainings() == 1 and "trainer" in setup.action().info, "the trainer started", proc)
    trainer = setup.action().info["trainer"]["pid"]
    asked = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, (setup.tmp / "first.out").read_text()[-3000:]
    took = time.monotonic() - asked
    assert took <= STOP_TIMEOUT + 0.5, f"the stop took {took:.1f} s"
    assert alive(trainer), "a bounded stop leaves the trainer running for the next start"
    action = setup.action()
    assert action.state == "training" and setup.completed() == 0
    assert "keeps running and the next start adopts it" in (setup.tmp / "first.out").read_text()

    restarted = setup.start(policy, "second")
    assert restarted.wait(timeout=90) == 0, (setup.tmp / "second.out").read_text()[-3000:]
    action = setup.action()
    assert action.state == "deployed", action.info.get("reason")
    assert action.info["train"]["adopted"] is True and action.attempts == 1
    assert setup.trainings() == 1 and setup.completed() == 1
    assert LocalRegistry(setup.state / "registry").aliases(MODEL) == {"champion": "v0002", "previous": "v0001"}


class BlockingHook:
    """A model server's reload endpoint that hangs on its first call (so the daemon can be
    killed mid-deploy) and a health endpoint that reports the served version."""

    def __init__(self, serving: Path) -> None:
        self.serving = serving
        self.reloads: list[str] = []
        self.first_call, self.release = threading.Event(), threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.reloads.append(body["version"])
                if len(hook.reloads) == 1:
                    hook.first_call.set()
                    hook.release.wait(30)
                self._send(200, {"version": body["version"]})

            def do_GET(self) -> None:  # noqa: N802
                self._send(200, {"version": (hook.serving / "VERSION").read_text().strip()})

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # the killed daemon's connection is gone

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_sigkill_during_deploy_finishes_it_once_on_restart(setup: Setup) -> None:
    hook = BlockingHook(setup.serving)
    try:
        urls = f"url: '{hook.url}/reload', health: '{hook.url}/health'"
        deploy = f"{{target: http, path: serving/{MODEL}, {urls}}}"
        policy = write_policy(setup.tmp, setup.trainer(sleep=0), deploy)
        watcher = ServingWatcher(setup.serving)
        proc = setup.start(policy, "first")
        wait_for(hook.first_call.is_set, "the deploy's reload call", proc)
        assert setup.action().state == "deploying"
        sigkill(proc)
        hook.release.set()

        restarted = setup.start(policy, "second")
        assert restarted.wait(timeout=60) == 0, (setup.tmp / "second.out").read_text()[-3000:]
        watcher.stop()
    finally:
        hook.close()
    action = setup.action()
    assert action.state == "deployed", action.info.get("reason")
    assert action.info["resumed"] is True and action.attempts == 1 and setup.trainings() == 1
    assert hook.reloads == ["v0002", "v0002"]  # interrupted, then finished once
    registry = LocalRegistry(setup.state / "registry")
    assert registry.aliases(MODEL) == {"champion": "v0002", "previous": "v0001"}
    assert (setup.serving / "VERSION").read_text().strip() == "v0002"
    assert pickle.loads((setup.serving / "model.pkl").read_bytes()).w1 == 1.0
    leftovers = [p.name for p in setup.serving.parent.iterdir() if ".tmp-" in p.name or ".link-" in p.name]
    assert leftovers == []
    assert watcher.errors == [] and watcher.reads > 0 and watcher.versions <= {"v0001", "v0002"}
