"""Follow a growing JSONL file, as ``tail -f`` does: the source a model server appends events to.

:class:`TailSource` is a :class:`~driftwarden.daemon.io.sources.FileSource` that never ends: it returns the
complete lines written so far (a line still being written waits for its newline), waits up to
the poll's ``timeout`` for more, and is never ``exhausted`` — the daemon runs until it is
stopped. Positions are the same as FileSource's (the number of non-blank lines before a
record, under the partition ``file:<name>``), so a restarted daemon resumes where its
checkpoint left off, and a checkpoint taken by ``driftwarden run --events`` carries over to
``--follow`` and back.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "events.jsonl"
>>> src = TailSource(p)                      # the file need not exist yet
>>> src.poll(10, 0), src.exhausted
([], False)
>>> _ = p.write_bytes(b'{"id": "1"}\\n\\n{"id": "2"}\\n{"id": "3')   # the last line is incomplete
>>> [(r.offset, r.value) for r in src.poll(10, 0)]
[(0, b'{"id": "1"}'), (1, b'{"id": "2"}')]
>>> with p.open("ab") as f: _ = f.write(b'"}\\n')
>>> [(r.offset, r.value) for r in src.poll(10, 0)]
[(2, b'{"id": "3"}')]
>>> src.seek({"file:events.jsonl": 1}); [r.offset for r in src.poll(10, 0)]
[1, 2]

Truncating or replacing the file under a running source is not supported (positions would no
longer name the same lines): the source logs an error and starts reading the new file from its
beginning, counting on from the old positions.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

from driftwarden.daemon.io.sources import Record

log = logging.getLogger("driftwarden.tail")

READ_SIZE = 1 << 20
"""Bytes read per system call."""

IDLE_SLEEP = 0.02
"""Seconds between looks at the file while a poll waits for new lines."""


class TailSource:
    """Records from a JSONL file that keeps growing; see the module docstring."""

    def __init__(
        self,
        path: str | Path,
        *,
        idle_sleep: float = IDLE_SLEEP,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.path = Path(path)
        self.partition = f"file:{self.path.name}"
        self.idle_sleep, self._clock, self._sleep = idle_sleep, clock, sleep
        self._file: BinaryIO | None = None
        self._inode: tuple[int, int] | None = None
        self._partial = b""
        self._lines: list[bytes] = []  # complete lines read but not yet returned
        self._next = 0  # position (line number) of the first line in self._lines
        self._skip = 0  # lines still to skip after a seek

    def seek(self, positions: Mapping[str, int]) -> None:
        self.close()
        self._skip = self._next = positions.get(self.partition, 0)

    def commit(self, positions: Mapping[str, int]) -> None:
        """Files need no acknowledgement: the checkpoint's position is where a restart resumes."""

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file, self._inode, self._partial, self._lines = None, None, b"", []
        self._skip = 0

    @property
    def exhausted(self) -> bool:
        return False

    @property
    def reachable(self) -> bool:
        """The followed file exists (``/readyz``: a removed file makes the daemon unready until it is back)."""
        return self.path.exists()

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        deadline = self._clock() + max(timeout, 0.0)
        while True:
            if not self._lines:
                self._read()
            if self._lines or self._clock() >= deadline:
                break
            self._sleep(min(self.idle_sleep, max(deadline - self._clock(), 0.0)))
        values, self._lines = self._lines[:max_records], self._lines[max_records:]
        start = self._next
        self._next += len(values)
        return [Record(v, self.partition, start + i) for i, v in enumerate(values)]

    def _read(self) -> None:
        """Read what was appended; keep the complete non-blank lines, hold back a partial one."""
        if self._file is None and not self._open():
            return
        assert self._file is not None
        data = self._file.read(READ_SIZE)
        if not data:
            self._check_replaced()
            return
        chunk = self._partial + data
        cut = chunk.rfind(b"\n")
        if cut < 0:
            self._partial = chunk
            return
        self._partial = chunk[cut + 1 :]
        lines = [line for line in (x.rstrip(b"\r") for x in chunk[:cut].split(b"\n")) if line.strip()]
        if self._skip:
            dropped = min(self._skip, len(lines))
            self._skip -= dropped
            lines = lines[dropped:]
        self._lines += lines

    def _open(self) -> bool:
        try:
            self._file = self.path.open("rb")
        except FileNotFoundError:
            return False
        st = os.fstat(self._file.fileno())
        self._inode = (st.st_dev, st.st_ino)
        return True

    def _check_replaced(self) -> None:
        assert self._file is not None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        here = self._file.tell()
        if (st.st_dev, st.st_ino) != self._inode or st.st_size < here:
            log.error(
                "%s was truncated or replaced while followed; reading the new file from its start "
                "(positions continue from %d)",
                self.path,
                self._next + len(self._lines),
            )
            self._file.close()
            self._file, self._partial = None, b""
