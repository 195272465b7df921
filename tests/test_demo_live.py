"""`driftwarden demo --live`: the demo's promise kept process to process — the example model server,
a `driftwarden run --follow` daemon and the demo client, the retrained model deployed through the
server's /reload.

The assertions of tests/test_demo_scenario.py are imported and run against both modes, named
explicitly (the module's ``demo_run`` fixture overrides the session one, which runs the default
mode), plus what only the live mode has.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from tests.conftest import json_lines, run_cli
from tests.test_demo_scenario import (  # noqa: F401 - collected here, against the live run
    test_accuracy_recovers_after_redeploy,
    test_demo_json_starts_with_the_scenario_and_ends_with_a_summary,
    test_drift_signals_only_after_drift_at,
    test_one_retrain_promoted_and_deployed,
)


@pytest.fixture(scope="module", params=["live", "in-process"])
def demo_run(
    request: pytest.FixtureRequest, live_demo_run: tuple[Path, list[dict]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[dict]]:
    """The demo in each mode once: its output folder and its JSON lines. The live mode is the session's run
    (``driftwarden demo --json``: live is the default), so the suite runs the live demo once."""
    if request.param == "live":
        out, lines = live_demo_run
    else:
        out = tmp_path_factory.mktemp(f"demo-{request.param}") / "out"
        lines = json_lines(run_cli("demo", f"--{request.param}", "--json", "--out", str(out)).stdout)
    assert lines[0]["mode"] == lines[-1]["demo"]["mode"] == request.param
    return out, lines


def live(demo_run: tuple[Path, list[dict]]) -> tuple[Path, list[dict]]:
    if demo_run[1][0]["mode"] != "live":
        pytest.skip("live mode only")
    return demo_run


def test_live_run_is_three_processes_and_the_server_served_the_new_model(demo_run: tuple[Path, list[dict]]) -> None:
    out, lines = live(demo_run)
    scenario, summary = lines[0], lines[-1]
    # The daemon read the file the server wrote: every prediction carries the version that served it,
    # and the switch happened once, at a chunk boundary, to the deployed version.
    served = [
        orjson.loads(x)["attributes"]["model_version"]
        for x in (out / "events.jsonl").read_bytes().splitlines()
        if b'"prediction"' in x
    ]
    assert len(served) == scenario["predictions"]
    switch = served.index("v0002")
    assert set(served[:switch]) == {"v0001"} and set(served[switch:]) == {"v0002"}
    assert switch % 100 == 0
    assert summary["records"] == sum(1 for x in (out / "events.jsonl").read_bytes().splitlines() if x.strip())
    # The policy deployed through the server (http target), and the server reloaded.
    policy = (out / "policy.yaml").read_text()
    assert "target: http" in policy and f"url: {scenario['server']}/reload" in policy
    assert "serving v0002" in (out / "server.log").read_text()
    # Both child processes are gone: the server's port answers no more.
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{scenario['server']}/health", timeout=2)


def test_the_live_daemon_checkpointed_the_whole_file(demo_run: tuple[Path, list[dict]]) -> None:
    """`driftwarden status` on the live run's state: the whole file was checkpointed, nothing in flight."""
    out, lines = live(demo_run)
    info = orjson.loads(run_cli("status", "--state-dir", str(out), "--json").stdout)
    assert info["next_index"] == lines[-1]["records"]
    assert info["positions"] == {"file:events.jsonl": lines[-1]["records"]}
    assert info["unfinished_actions"] == []


def test_run_follow_tails_a_growing_file_and_resumes_after_sigterm(tmp_path: Path) -> None:
    """`driftwarden run --follow`: reads lines as they are appended (a partial line waits for its
    end), stops on SIGTERM with a checkpoint, and a restart reads only what came after."""
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT

    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nmodel: m\nmonitors:\n  e: {kind: adwin, series: error}\n")
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"")
    state = tmp_path / "state"
    # The loop checkpoints when a batch arrives and the checkpoint is due: checkpoint every batch,
    # so that the store shows each append as soon as it is read.
    config = tmp_path / "daemon.yaml"
    config.write_text("checkpoint_records: 1\n")

    def event(i: int) -> bytes:
        return orjson.dumps({"model": "m", "id": str(i), "ts": 1_800_000_000 + i, "prediction": 1, "label": i % 2})

    def append(data: bytes) -> None:
        with events.open("ab") as f:
            f.write(data)

    def next_index() -> int:
        db = state / "state.db"
        if not db.exists():
            return -1
        proc = run_cli("status", "--state-dir", str(state), "--json", check=False)
        return orjson.loads(proc.stdout)["next_index"] if proc.returncode == 0 else -1

    def wait_for(n: int) -> None:
        deadline = time.monotonic() + 30
        while next_index() != n:
            assert time.monotonic() < deadline, f"the daemon did not reach {n} records"
            time.sleep(0.1)

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "driftwarden.daemon.cli",
                "run",
                "--config",
                str(config),
                "--policy",
                str(policy),
                "--events",
                str(events),
                "--follow",
                "--state-dir",
                str(state),
                "--json",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stop(proc: subprocess.Popen[str]) -> dict:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr[-2000:]
        return json_lines(stdout)[-1]

    daemon = start()
    try:
        append(b"\n".join(event(i) for i in range(50)) + b"\n" + event(50)[:10])  # the last line is half written
        wait_for(50)
        append(event(50)[10:] + b"\n" + b"".join(event(i) + b"\n" for i in range(51, 60)))
        wait_for(60)
        first = stop(daemon)
        append(b"".join(event(i) + b"\n" for i in range(60, 80)))
        daemon = start()
        wait_for(80)
        second = stop(daemon)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    assert (first["records"], first["events"], first["dead_letters"]) == (60, 60, 0)
    assert (second["records"], second["events"], second["dead_letters"]) == (20, 20, 0)
