"""A real Apache Kafka broker for the ``kafka``-marked tests.

``kafka_bootstrap`` (session) finds or starts one, in this order:

1. ``DRIFTWARDEN_KAFKA_BOOTSTRAP`` names an external broker: used as is, never stopped;
2. the dev broker of ``deploy/kafka/broker`` is running (``.ci/run`` or a developer started
   it): reused, left running;
3. otherwise a private dev broker is started for this session (state in the session's tmp
   dir, a free port pair) and stopped at the end; parallel test runs do not share it.

A broker that cannot start skips the Kafka tests, unless ``DRIFTWARDEN_REQUIRE_KAFKA=1``
(``.ci/run`` sets it): then the tests fail.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from driftwarden.daemon.io.kafka.admin import ensure_topics

ROOT = Path(__file__).resolve().parents[2]
BROKER = ROOT / "deploy" / "kafka" / "broker"
# A cold start downloads ~45 MB of jars through Maven first; a warm one takes 3-10 s.
START_TIMEOUT_S = 300
STOP_TIMEOUT_S = 60


def _require() -> bool:
    return os.environ.get("DRIFTWARDEN_REQUIRE_KAFKA") == "1"


def _unavailable(reason: str) -> None:
    if _require():
        pytest.fail(f"Kafka broker required (DRIFTWARDEN_REQUIRE_KAFKA=1) but: {reason}", pytrace=False)
    pytest.skip(f"no Kafka broker: {reason}")


def _broker(command: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BROKER), command], env=env, capture_output=True, text=True, timeout=timeout)


def _free_port_pair() -> int:
    """A port P with P and P+1 free now (the broker's client and controller listeners)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return int(port)
    raise RuntimeError("no free pair of adjacent ports on 127.0.0.1")


@pytest.fixture(scope="session", autouse=True)
def _imports_in_the_main_thread() -> None:
    """Some tests run two daemon loops in this process (in production each has its own): the
    libraries that monitors, the gate and the labeled buffer import lazily are imported here first,
    in the main thread (two threads racing one lazy import see a half-initialized module:
    "partially initialized module 'river.drift.adwin' has no attribute 'ADWIN'")."""
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import scipy.stats  # noqa: F401
    import sklearn.dummy  # noqa: F401
    from driftwarden.detectors.lazy import import_leaf

    import_leaf("river.drift.adwin")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a running Kafka broker (see the module docstring)."""
    external = os.environ.get("DRIFTWARDEN_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    env = dict(os.environ)
    try:
        status = _broker("status", env, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        _unavailable(f"{BROKER} status: {e}")
    if status.returncode == 0:
        yield f"127.0.0.1:{env.get('DRIFTWARDEN_KAFKA_PORT', '39092')}"
        return

    env["DRIFTWARDEN_KAFKA_DIR"] = str(tmp_path_factory.mktemp("kafka"))
    env["DRIFTWARDEN_KAFKA_PORT"] = str(_free_port_pair())
    try:
        started = _broker("start", env, timeout=START_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        _broker("stop", env, timeout=STOP_TIMEOUT_S)
        _unavailable(f"{BROKER} start: {e}")
    if started.returncode != 0:
        _unavailable(f"{BROKER} start exited {started.returncode}:\n{started.stderr[-3000:]}")
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        _broker("stop", env, timeout=STOP_TIMEOUT_S)


@pytest.fixture
def kafka_topic(kafka_bootstrap: str) -> Callable[..., str]:
    """Factory: ``kafka_topic(partitions=3)`` creates a new, uniquely named topic."""

    def make(partitions: int = 3, prefix: str = "test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        ensure_topics(kafka_bootstrap, {name: partitions})
        return name

    return make


@pytest.fixture
def kafka_group() -> Callable[[], str]:
    """Factory: a new, unique consumer group id per call."""
    return lambda: f"group-{uuid.uuid4().hex[:12]}"


class OwnBroker:
    """A dev broker of one test's own (its state dir, its ports), which the test may kill -9 and
    start again on the same data: the shared session broker is never touched."""

    def __init__(self, root: Path) -> None:
        self.env = {
            **os.environ,
            "DRIFTWARDEN_KAFKA_DIR": str(root),
            "DRIFTWARDEN_KAFKA_PORT": str(_free_port_pair()),
        }
        self.bootstrap = f"127.0.0.1:{self.env['DRIFTWARDEN_KAFKA_PORT']}"

    def start(self) -> None:
        try:
            started = _broker("start", self.env, timeout=START_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as e:
            _unavailable(f"{BROKER} start: {e}")
        if started.returncode != 0:
            _unavailable(f"{BROKER} start exited {started.returncode}:\n{started.stderr[-3000:]}")

    def kill(self) -> None:
        """SIGKILL, as a crashed or OOM-killed broker: no clean shutdown. Returns once it is dead."""
        pid = int((Path(self.env["DRIFTWARDEN_KAFKA_DIR"]) / "broker.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        stat = Path(f"/proc/{pid}/stat")
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    return  # dead, not yet reaped by its parent
            except (FileNotFoundError, IndexError):
                return
            time.sleep(0.05)
        raise AssertionError(f"broker {pid} still alive {STOP_TIMEOUT_S} s after SIGKILL")

    def stop(self) -> None:
        _broker("stop", self.env, timeout=STOP_TIMEOUT_S)


@pytest.fixture(scope="module")
def _module_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnBroker]:
    """One :class:`OwnBroker` for a module's tests (a start costs ~10 s), stopped after them."""
    broker = OwnBroker(tmp_path_factory.mktemp("own-kafka"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def own_broker(_module_broker: OwnBroker) -> OwnBroker:
    """A running :class:`OwnBroker` of the test's module (started again if a test before left it killed): the
    module's tests share it, each with topics and groups of its own."""
    _module_broker.start()  # does nothing when it runs
    return _module_broker
