"""Storage faults: a full disk, a read-only folder, a permission refused, a failing device.

They are the operator's to fix, not bugs: the daemon stops with one line saying what and where
(``driftwarden run`` exits 74, EX_IOERR), its state as of the last checkpoint. :func:`storage_fault`
tells them apart from other errors, whether they come from the OS (``OSError`` with its errno),
from SQLite (its extended error name) or from a library that only kept the OS's message.

>>> import errno, sqlite3
>>> storage_fault(OSError(errno.ENOSPC, "No space left on device", "/state/buffers/m/x.tmp"))
'disk full: /state/buffers/m/x.tmp (No space left on device)'
>>> e = sqlite3.OperationalError("database or disk is full"); e.sqlite_errorname = "SQLITE_FULL"
>>> storage_fault(e, "/state/state.db")
'disk full: /state/state.db (database or disk is full)'
>>> storage_fault(OSError(errno.EROFS, "Read-only file system", "/state/dead_letters.jsonl"))
'read-only file system: /state/dead_letters.jsonl (Read-only file system)'
>>> storage_fault(ValueError("a bug")) is None, storage_fault(ConnectionRefusedError(111, "refused")) is None
(True, True)
"""

from __future__ import annotations

import errno
import sqlite3

EXIT_IO = 74
"""sysexits EX_IOERR: ``driftwarden run`` stopped on a storage fault (disk full, read-only, permission, I/O)."""

_ERRNOS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EIO: "I/O error",
}
_SQLITE = {
    "SQLITE_FULL": "disk full",
    "SQLITE_READONLY": "read-only file system",
    "SQLITE_PERM": "permission denied",
    "SQLITE_AUTH": "permission denied",
    "SQLITE_IOERR": "I/O error",
    "SQLITE_CANTOPEN": "cannot open the database",
    "SQLITE_BUSY": "locked by another process",
}
_MESSAGES = {
    "No space left on device": "disk full",
    "Disk quota exceeded": "disk quota exceeded",
    "Read-only file system": "read-only file system",
    "Permission denied": "permission denied",
}
"""What libraries that drop the errno (pyarrow's OSError) still say."""


def storage_fault(exc: BaseException, where: str | None = None) -> str | None:
    """One line for a storage fault (what, the system's words, and the file when known), or None
    for any other error. ``where`` names the file of a SQLite error (SQLite's errors do not)."""
    kind: str | None = None
    detail = str(exc)
    path = where
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", None) or ""
        kind = next((k for prefix, k in _SQLITE.items() if name.startswith(prefix)), None)
        if kind is None and isinstance(exc, sqlite3.OperationalError):
            kind = next(
                (
                    k
                    for m, k in (
                        ("disk is full", "disk full"),
                        ("readonly", "read-only file system"),
                        ("disk I/O error", "I/O error"),
                    )
                    if m in detail
                ),
                None,
            )
    elif isinstance(exc, OSError):
        kind = _ERRNOS.get(exc.errno) if exc.errno is not None else None
        if kind is None and exc.errno is None:
            kind = next((k for m, k in _MESSAGES.items() if m in detail), None)
        if kind is not None:
            detail = exc.strerror or detail
            path = exc.filename  # the OS names the file, or nothing: never guess it
    if kind is None:
        return None
    return f"{kind}: {path} ({detail})" if path else f"{kind} ({detail})"
