"""Shared fixtures: the demo run (once per session) and small factories."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPILED = ("daemon", "detectors", "policies", "deploy", "examples", "tests")
"""Folders whose bytecode the suite writes before it starts: the tests start `driftwarden` (and trainers importing
tests' modules) in a few hundred subprocesses, and where PYTHONDONTWRITEBYTECODE=1 (this machine, CI) each would
compile every module it imports again (~0.4 s of a daemon's start)."""


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile :data:`COMPILED` once (in the controller, before any xdist worker starts; ~1 s, ~0.1 s when current).
    The cache is what a normal install writes; a stale file is never used (Python checks the source's mtime)."""
    if hasattr(session.config, "workerinput"):
        return
    import compileall

    for folder in COMPILED:
        compileall.compile_dir(ROOT / folder, quiet=1)


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


SHARED_WORKER = {
    "tests/kafka/test_broker_outage.py": "outage",  # a broker of its own, killed and started again (no session one)
    "tests/kafka/": "kafka",  # the session's Kafka broker
    "tests/test_demo_live.py": "demo",  # the demo runs (the session's, and the live module's two)
    "tests/test_demo_scenario.py": "demo",
    "tests/daemon/test_restart.py": "demo",
    "tests/daemon/alerting/test_delivery.py": "demo",
    "tests/test_packaging.py": "packaging",  # one wheel build (pip writes build/ in the checkout)
}
"""Under pytest-xdist (``make test`` runs two workers) the tests of a group run on one worker, so an expensive
session fixture is made once, not once per worker. By path (the first that matches): the controller that schedules
sees node ids only."""

SLOWEST_FIRST = (
    "kafka",
    "demo",
    "outage",
    "tests/daemon/test_lifecycle_soak.py",
    "tests/daemon/test_state_integrity.py",
    "tests/policies/test_daemon_policies.py",
    "tests/daemon/test_lifecycle_crash.py",
    "tests/deploy/test_lifecycle.py",
    "tests/deploy/test_training.py",
    "tests/http/test_admin.py",
    "tests/deploy/test_lifecycle_suite.py",
    "packaging",
    "tests/http/test_metrics.py",
    "tests/detectors/test_stats.py",
    "tests/daemon/test_lifecycle_order.py",
    "tests/http/test_page.py",
)
"""The work units (groups, modules) that take longest, longest first: xdist hands them out first, so that no worker
ends the run alone with one of them (from ``--durations=0``: 15-160 s each; every other module takes less)."""


def work_unit(nodeid: str) -> str:
    """The unit xdist schedules a test in: its :data:`SHARED_WORKER` group, else its module (a module's fixtures are
    made once, on one worker).

    >>> work_unit("tests/kafka/test_records.py::test_x[1]"), work_unit("tests/daemon/test_merge.py::test_y")
    ('kafka', 'tests/daemon/test_merge.py')
    """
    return next((group for path, group in SHARED_WORKER.items() if nodeid.startswith(path)), nodeid.split("::")[0])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker, the tests of :data:`SLOWEST_FIRST`'s units first, in that order (a stable sort: every worker
    collects the same order, which the controller schedules from). A run without xdist keeps the collected order."""
    if not hasattr(config, "workerinput"):
        return
    rank = {unit: i for i, unit in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(work_unit(item.nodeid), len(rank)))


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: without xdist, never called
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """Load scheduling by :func:`work_unit`, in the collected order (:func:`pytest_collection_modifyitems`'s; xdist's
    own reorder, by number of tests, is turned off)."""
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    config.option.loadscopereorder = False
    return SharedFixtureScheduling(config, log)


def json_lines(text: str) -> list[dict]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip().startswith("{")]


@pytest.fixture(scope="session")
def live_demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """`driftwarden demo --json` (the live mode, the default) once: its output folder and its JSON lines."""
    out = tmp_path_factory.mktemp("demo") / "out"
    proc = run_cli("demo", "--json", "--out", str(out))
    return out, json_lines(proc.stdout)


@pytest.fixture(scope="session")
def demo_run(live_demo_run: tuple[Path, list[dict]]) -> tuple[Path, list[dict]]:
    """The demo's run (:func:`live_demo_run`). tests/test_demo_live.py overrides this name with both modes; it
    asks for ``live_demo_run`` by its own name, since a fixture asking for the one it overrides would share the
    override's parameter and run the session's demo once per mode."""
    return live_demo_run
