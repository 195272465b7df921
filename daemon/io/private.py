"""Files and folders only the daemon's user can read: state, buffers, dead letters, alerts, evidence.

They hold raw events, labels and monitor state. Files are created 0600 and folders 0700 (the
process umask can only take more away); an existing file or folder keeps its mode.

>>> import stat, tempfile
>>> from pathlib import Path
>>> d = Path(tempfile.mkdtemp()) / "state" / "buffers"
>>> with open_private(d / "x.jsonl", "ab") as f:
...     _ = f.write(b"{}\\n")
>>> oct(stat.S_IMODE((d / "x.jsonl").stat().st_mode)), oct(stat.S_IMODE(d.stat().st_mode))
('0o600', '0o700')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Literal

FILE_MODE, FOLDER_MODE = 0o600, 0o700
"""State holds raw events, labels and monitor state: readable by the daemon's user only."""

_FLAGS = {"wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "ab": os.O_WRONLY | os.O_CREAT | os.O_APPEND}


def private_folder(path: str | Path) -> Path:
    """``path`` and its missing parents created 0700 (``mkdir(parents=True)`` gives parents the
    default mode); returned."""
    path = Path(path)
    missing = []
    for p in (path, *path.parents):  # up to the first that exists: its parents do too
        if p.exists():
            break
        missing.append(p)
    for p in reversed(missing):
        p.mkdir(mode=FOLDER_MODE, exist_ok=True)
    return path


def open_private(path: str | Path, mode: Literal["wb", "ab"]) -> IO[bytes]:
    """``open(path, mode)`` for a binary write or append, creating the file 0600 (and its folder 0700)."""
    path = Path(path)
    private_folder(path.parent)
    return os.fdopen(os.open(path, _FLAGS[mode], FILE_MODE), mode)


def touch_private(path: str | Path) -> Path:
    """Create ``path`` empty and 0600 unless it exists (so a library that then writes it keeps the mode)."""
    open_private(path, "ab").close()
    return Path(path)
