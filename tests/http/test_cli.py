"""`driftwarden status` asks the running daemon over HTTP and falls back to the state folder, saying so;
`driftwarden models` finds the registry from --state-dir or --config."""

from __future__ import annotations

import orjson

from ..conftest import run_cli
from .conftest import RunningDaemon, events


def test_status_asks_the_daemon_then_falls_back_to_the_state_folder(daemon: RunningDaemon) -> None:
    daemon.append(events(200))
    daemon.wait_for(lambda: daemon.get("/api/v1/status").json()["records"] >= 450, what="records read")
    state = str(daemon.root / "state")
    live = orjson.loads(run_cli("status", "--state-dir", state, "--json").stdout)
    assert live["source"] == "daemon" and live["url"] == daemon.url
    assert [m["name"] for m in live["models"]] == ["shop", "fraud"] and live["ready"] is True
    table = run_cli("status", "--url", daemon.url).stdout
    assert "ready" in table and "shop" in table and "fraud" in table
    assert daemon.stop() == 0
    stored = run_cli("status", "--state-dir", state, "--json")
    info = orjson.loads(stored.stdout)
    assert info["source"] == "state" and info["next_index"] == 450
    assert "no daemon answered" in info["note"]
    people = run_cli("status", "--state-dir", state, "--url", daemon.url)
    assert "no daemon answered" in people.stderr and "450" in people.stdout


def test_models_reads_the_registry_of_a_state_folder_or_config(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from driftwarden.deploy.registry import LocalRegistry

    state = tmp_path / "state"
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    (artifact / "model.pkl").write_bytes(b"m")
    LocalRegistry(state / "registry").register("shop", artifact, {"metrics": {"accuracy": 0.9}})
    config = tmp_path / "config.yaml"
    config.write_text(f"state_dir: {state}\n")
    for args in (["--state-dir", str(state)], ["--config", str(config)]):
        rows = [
            orjson.loads(line) for line in run_cli("models", "list", *args, "--json", cwd=tmp_path).stdout.splitlines()
        ]
        assert [(r["model"], r["version"]) for r in rows] == [("shop", "v0001")], args
    assert run_cli("models", "list", "--json", cwd=tmp_path).stdout == ""  # the default: ./.driftwarden/registry
