"""Shared fixtures: the demo run (once per session) and small factories."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path = ROOT, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``driftwarden ARGS`` in a real subprocess."""
    proc = subprocess.run(
        [sys.executable, "-m", "driftwarden.daemon.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"driftwarden {' '.join(args)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


HEAVY_FIXTURES = ("kafka_bootstrap", "own_broker", "demo_run")
"""Fixtures that start a Kafka broker or run the whole demo: session ones made once per worker that needs them
(own_broker, a broker per test, kept off the other worker so that two JVMs do not start at once)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test`` runs two workers with ``--dist loadgroup``) every test that uses a
    heavy session fixture runs on one worker, so the broker starts and the demo runs once, not once per worker."""
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in HEAVY_FIXTURES):
            item.add_marker(pytest.mark.xdist_group("heavy"))


def json_lines(text: str) -> list[dict]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip().startswith("{")]


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """`driftwarden demo --json` once: its output folder and its JSON lines."""
    out = tmp_path_factory.mktemp("demo") / "out"
    proc = run_cli("demo", "--json", "--out", str(out))
    return out, json_lines(proc.stdout)
