"""One daemon per state folder: an exclusive ``flock`` on ``<state>/daemon.lock``, released by the kernel.

Two daemons on one folder would write every signal and decision twice and buffer every labeled row twice.
The lock is taken before anything else is opened; the holder's pid and start time are written into the file
so the second daemon's error names them. The kernel drops the lock when the holder dies (even by SIGKILL),
so a stale file never blocks a restart. Read-only commands (``status``, ``history``, ``models list``) do not
take it.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> with StateLock.acquire(folder) as held:
...     try:
...         StateLock.acquire(folder)
...     except StateLocked as e:
...         print("refused:", e.pid == held.pid)
refused: True
>>> StateLock.acquire(folder).release()  # free again
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

import orjson

LOCK_FILE = "daemon.lock"


class StateLocked(RuntimeError):
    """Another live process holds the state folder."""

    def __init__(self, folder: Path, pid: int | None, since: float | None) -> None:
        self.folder, self.pid, self.since = folder, pid, since
        who = f"process {pid}" if pid else "another process"
        when = f" since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}" if since else ""
        super().__init__(
            f"state folder {folder} is in use by {who}{when} (lock {folder / LOCK_FILE}); "
            "one daemon per state folder: stop it, or give this one its own --state-dir"
        )


class StateLock:
    """An exclusive lock on a state folder, held until :meth:`release` or the process ends."""

    def __init__(self, folder: Path, fd: int, pid: int) -> None:
        self.folder, self._fd, self.pid = folder, fd, pid

    @classmethod
    def acquire(cls, folder: Path) -> StateLock:
        """Take the lock at once or raise :class:`StateLocked` naming the holder (never waits)."""
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            pid, since = holder.get("pid"), holder.get("since")
            raise StateLocked(folder, int(pid) if pid else None, float(since) if since else None) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, orjson.dumps({"pid": os.getpid(), "since": time.time()}), 0)
        return cls(folder, fd, os.getpid())

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> StateLock:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read_holder(fd: int) -> dict[str, float]:
    try:
        data = orjson.loads(os.pread(fd, 4096, 0) or b"{}")
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}
