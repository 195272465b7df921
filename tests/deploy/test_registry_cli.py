"""``driftwarden models list|show|promote|rollback --json`` on both registries."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner
from driftwarden.daemon.cli import main as cli
from driftwarden.deploy.targets import LocalTarget

from tests.deploy.trainers import LinearRule


def invoke(*args: str, code: int = 0) -> list[dict[str, Any]]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return [orjson.loads(line) for line in result.output.splitlines() if line.startswith("{")]


def test_models_commands(registry: Any, tmp_path: Path) -> None:
    mlflow = type(registry).__name__ == "MlflowRegistry"
    location = f"mlflow:{registry.uri}" if mlflow else str(registry.root)
    for w1 in (-1.0, 1.0):
        art = tmp_path / f"art{w1}"
        art.mkdir()
        (art / "model.pkl").write_bytes(pickle.dumps(LinearRule(1.0, w1)))
        meta = {"metrics": {"accuracy": 0.5 + w1 / 4}, "decision": f"m/r/{w1}"}
        registry.register("m", art, meta)
    serving = tmp_path / "serving" / "m"

    promoted = invoke("models", "promote", "--registry", location, "m", "v0001", "--json")
    assert promoted == [
        {
            "model": "m",
            "state": "promoted",
            "version": "v0001",
            "previous": None,
            "served_from": None,
        }
    ]
    invoke("models", "promote", "--registry", location, "m", "v0002", "--serving", str(serving))
    assert LocalTarget(serving).current() == "v0002"
    rows = invoke("models", "list", "--registry", location, "--json")
    assert [(r["version"], r["aliases"], r["metrics"]["accuracy"]) for r in rows] == [
        ("v0001", ["previous"], 0.25),
        ("v0002", ["champion"], 0.75),
    ]
    (shown,) = invoke("models", "show", "--registry", location, "m", "--json")
    assert shown["version"] == "v0002" and shown["metadata"]["decision"] == "m/r/1.0"

    (back,) = invoke("models", "rollback", "--registry", location, "m", "--serving", str(serving), "--json")
    assert back["state"] == "rolled_back" and back["version"] == "v0001"
    assert LocalTarget(serving).current() == "v0001"
    assert registry.aliases("m") == {"champion": "v0001", "rolled_back": "v0002"}
    invoke("models", "rollback", "--registry", location, "m", "--json", code=1)  # none left
