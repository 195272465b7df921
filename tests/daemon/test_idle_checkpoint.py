"""An idle stream still checkpoints within checkpoint_seconds: progress is never held back by silence."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from driftwarden.daemon.config import Settings
from driftwarden.daemon.io.sources import MemorySource
from driftwarden.daemon.runtime import Daemon
from driftwarden.daemon.state.store import Store
from driftwarden.policies.loader import load_policy

WAIT_S = 10.0
"""A hang guard for each checkpoint (~30x checkpoint_seconds, for two loaded cores): without the idle loop's checkpoint
the second batch is never written, however long the wait."""


def test_progress_is_checkpointed_while_the_source_is_idle(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("version: 1\nmodel: m\nmonitors:\n  e: {kind: adwin, series: error}\n")
    source = MemorySource(closed=False)
    settings = Settings(
        state_dir=tmp_path / "s", checkpoint_records=1_000_000, checkpoint_seconds=0.3, poll_timeout=0.05
    )
    daemon = Daemon(settings, source, [load_policy(tmp_path / "p.yaml")])
    runner = threading.Thread(target=daemon.run, kwargs={"timeout": WAIT_S})  # stopped below
    runner.start()

    def checkpointed(n: int) -> int:
        deadline, seen = time.monotonic() + WAIT_S, 0
        while time.monotonic() < deadline and seen < n:
            store = Store(settings.store_path)
            seen = store.next_index()
            store.close()
            time.sleep(0.02)
        return seen

    source.push([b'{"model": "m", "id": %d, "prediction": 1, "label": 1}' % i for i in range(10)])
    first = checkpointed(10)
    # Right after a checkpoint: the next batch is not due by time when it is processed, and
    # nothing follows it; only the idle loop can write it.
    source.push([b'{"model": "m", "id": %d, "prediction": 1, "label": 1}' % i for i in range(10, 20)])
    second = checkpointed(20)
    daemon.stop()
    runner.join()
    daemon.close()
    assert (first, second) == (10, 20)
