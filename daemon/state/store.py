"""The daemon's durable state in SQLite (WAL): checkpoints, action records and the audit log.

A checkpoint is one transaction holding the source positions, the next event index, every
model's pipeline state and the new action intents; so after a crash the daemon resumes from a
consistent point and an intent is never lost nor written twice.

>>> s = Store(":memory:")
>>> s.checkpoint({"file:a": 10}, 10, {"m": {"x": 1}}, [Intent("m/r/9", "m", "r", "alert", "alert", 9, 0.0, {})])
['m/r/9']
>>> s.checkpoint({"file:a": 20}, 20, {"m": {"x": 2}}, [Intent("m/r/9", "m", "r", "alert", "alert", 9, 0.0, {})])
[]
>>> s.positions(), s.next_index(), s.pipeline_state("m"), s.action("m/r/9").state
({'file:a': 20}, 20, {'x': 2}, <ActionState.PENDING: 'pending'>)
>>> s.update_action("m/r/9", ActionState.DONE, {}); [a.key for a in s.unfinished_actions()]
[]
"""

from __future__ import annotations

import hashlib
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from driftwarden.daemon.io.events import EVENT_FIELDS
from driftwarden.daemon.io.private import FILE_MODE, FOLDER_MODE
from driftwarden.daemon.state.faults import storage_fault
from driftwarden.deploy.states import TERMINAL_STATES, ActionState
from driftwarden.detectors.base import Part

if TYPE_CHECKING:
    from driftwarden.daemon.state.label_join import PendingDelta

_HALF_ID = EVENT_FIELDS.index("id")
ADMITTED = "admitted:"
"""Checkpoint-table key prefix of the models fleet policies admitted (see :meth:`Store.admit`)."""

_ACTION_COLUMNS = "key, model, rule, action, type, at, ts, state, version, attempts, created, updated, info"
"""The columns of an :class:`ActionRecord`, in its fields' order."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoint (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS actions (
    key TEXT PRIMARY KEY, model TEXT NOT NULL, rule TEXT NOT NULL, action TEXT NOT NULL, type TEXT NOT NULL,
    at INTEGER NOT NULL, ts REAL NOT NULL, state TEXT NOT NULL, version TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL, updated REAL NOT NULL, info BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS parts (
    model TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (model, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending_log (
    model TEXT NOT NULL, seq INTEGER NOT NULL, added BLOB NOT NULL, removed BLOB NOT NULL, PRIMARY KEY (model, seq)
);
-- waiting also has the column n (the entry's rows), which MIGRATIONS[3] adds to it
CREATE TABLE IF NOT EXISTS waiting (seq INTEGER PRIMARY KEY, model TEXT NOT NULL, rows BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS waiting_model ON waiting (model);
CREATE TABLE IF NOT EXISTS outbox (
    key TEXT PRIMARY KEY, notification TEXT NOT NULL, model TEXT NOT NULL, destination TEXT NOT NULL,
    status TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL, error TEXT, payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_at);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, wall REAL NOT NULL, model TEXT, type TEXT NOT NULL, key TEXT,
    payload BLOB NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Intent:
    """A decision written down before anything runs; ``key`` makes it idempotent."""

    key: str
    model: str
    rule: str
    action: str
    type: str
    at: int
    ts: float
    info: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class WaitingDelta:
    """How the events that wait for more of their model (past the checkpoint's positions, not yet
    applied) changed since the last checkpoint: ``added`` appends, per model (in the order the
    models began to wait), the number of rows and their serialized form; ``cleared`` names the
    models whose stored rows have run."""

    added: Mapping[str, tuple[int, bytes]]
    cleared: Iterable[str]


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A notification for one destination, written in the checkpoint that made it: ``key`` is
    ``notification@destination``; ``notification`` is the idempotency key the receiver sees."""

    key: str
    notification: str
    model: str
    destination: str
    status: str
    payload: Mapping[str, Any]


OUTBOX_STATES = ("pending", "delivered", "failed")


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """An intent and how far it got: one row of the ``actions`` table, ``info`` decoded (the
    progress each state recorded, merged)."""

    key: str
    model: str
    rule: str
    action: str
    type: str
    at: int
    ts: float
    state: ActionState | str
    """An :class:`ActionState`; a plain string only for a state this version does not know
    (a store written by a newer daemon)."""
    version: str | None
    attempts: int
    created: float
    updated: float
    info: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """The record as plain JSON values (the state as its string)."""
        return {**{f: getattr(self, f) for f in self.__dataclass_fields__}, "state": str(self.state)}

    @property
    def verification_due(self) -> bool:
        """Deployed, and the policy verifies the deploy, but the verification has not started."""
        return verification_due(self.state, self.info)

    @property
    def finished(self) -> bool:
        """Nothing is left to do for it (see :func:`action_finished`)."""
        return action_finished(self.state, self.info)


def verification_due(state: str, info: Mapping[str, Any]) -> bool:
    """An action in ``state`` whose records hold ``info`` waits for its verification to start:
    the action runner records ``verify_window`` with ``deployed`` when the policy verifies, and
    ``verify`` (the window's start) with ``verifying``."""
    return state == ActionState.DEPLOYED and bool(info.get("verify_window")) and not info.get("verify")


def action_finished(state: str, info: Mapping[str, Any]) -> bool:
    """Nothing is left to do for an action in ``state`` whose records hold ``info``: a terminal
    state, or ``deployed`` with no verification due. (``promoted`` counts as unfinished: only
    the policy knows whether a deploy follows it.) Works on a stored record and on the action
    line of the moment it changed state (which carries that state's ``info``).

    >>> action_finished("deployed", {}), action_finished("deployed", {"verify_window": 500})
    (True, False)
    >>> action_finished("rolled_back", {}), action_finished("promoted", {})
    (True, False)
    """
    if state == ActionState.DEPLOYED:
        return not verification_due(state, info)
    return state in TERMINAL_STATES


SCHEMA_VERSION = 4
"""``PRAGMA user_version`` of the tables above; a store from an older version is migrated at open, a newer one
is refused (its format is unknown here)."""
MIGRATIONS: dict[int, str] = {0: "", 1: "", 2: "", 3: "ALTER TABLE waiting ADD COLUMN n INTEGER;"}
"""SQL that takes a store from version N to N + 1 (0 → 1: the unversioned store of 0.1.0 has the same tables;
1 → 2: the ``parts`` table, 2 → 3: the ``waiting`` table, both of which :data:`SCHEMA` creates; 3 → 4: the
number of rows of each ``waiting`` entry, ``n``, so a restart counts the waiting events without reading them:
NULL in an entry a version-3 store wrote, which is then read to count it)."""

OPEN_BUSY_SECONDS = 30.0
"""How long opening a store waits out another process's lock on it (two processes creating or migrating one
store at the same moment: SQLite refuses one without waiting when both want to write). Locked is not damage."""
OPEN_RETRY_SECONDS = 0.05
"""Pause between tries of an open that found the store locked."""
BUSY_TIMEOUT_SECONDS = 5.0
"""How long one statement waits for another connection's lock before SQLite reports the store busy (sqlite3's
default, named)."""

PART_REF = "$part"
"""Key of a reference, in a stored pipeline state, to one of its model's rows in the ``parts`` table."""


class StateCorrupt(RuntimeError):
    """The state cannot be trusted: one clear error naming the file, instead of a traceback on every start.

    ``driftwarden state check`` reports what is wrong, ``driftwarden state repair`` sets it aside.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path, self.problem = path, problem
        super().__init__(
            f"{path}: {problem}; the daemon will not start on it (it would silently drop state). "
            "`driftwarden state check` shows what is damaged, `driftwarden state repair` quarantines it"
        )


class Store:
    """SQLite store; safe to use from the loop thread and action worker threads.

    Opening checks the file (a zero-length or garbled database, a failing integrity check, a schema from a
    newer version) and raises :class:`StateCorrupt`; an older schema is migrated.

    ``readonly`` opens an existing store for reading only, beside the daemon that writes it (a
    progress watcher); it raises ``sqlite3.OperationalError`` while the daemon has not yet
    created the tables, and any write fails.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        self._parts: dict[str, set[str]] = {}
        """model → the keys of its rows in ``parts`` (read at its first checkpoint by this object)."""
        if readonly:
            self._db = sqlite3.connect(
                Path(self.path).absolute().as_uri() + "?mode=ro", uri=True, check_same_thread=False
            )
            try:
                self._db.execute("SELECT 1 FROM actions LIMIT 1")  # created after the checkpoint table
            except sqlite3.Error:
                self._db.close()
                raise
            return
        if self.path != ":memory:":
            file = Path(self.path)
            if file.exists() and file.stat().st_size == 0 and _holds_state(file.parent):
                # Empty beside buffers or a registry: truncated, not a store that was never written.
                raise StateCorrupt(self.path, "the database file is empty (truncated?)")
            private_file(file)
        deadline = time.monotonic() + OPEN_BUSY_SECONDS
        while True:
            self._db = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False, isolation_level=None
            )
            try:
                self._prepare()
                return
            except sqlite3.DatabaseError as e:
                self._db.close()
                if _busy(e) and time.monotonic() < deadline:  # another process is creating or migrating it
                    time.sleep(OPEN_RETRY_SECONDS)
                    continue
                if storage_fault(e) is not None:  # a full disk, a read-only folder, a lock held on: not damage
                    raise
                raise StateCorrupt(self.path, f"not a readable SQLite database ({e})") from None
            except StateCorrupt:
                self._db.close()
                raise

    def _prepare(self) -> None:
        """WAL mode, the integrity check and the schema (created or migrated) of a store opened for writing."""
        with self._lock:
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
                problems = [r[0] for r in self._db.execute("PRAGMA quick_check").fetchall()]
                if problems != ["ok"]:
                    raise StateCorrupt(self.path, "integrity check failed: " + "; ".join(problems[:5]))
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()

    def _migrate(self) -> None:
        """The schema, created or migrated to :data:`SCHEMA_VERSION` in one write transaction that also reads
        the version: a daemon killed halfway leaves the store as it was, and of two processes opening one old
        (or new) store at once the second sees the first's version (a migration that is not idempotent, such
        as adding a column, never runs twice on one store)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StateCorrupt(
                    self.path, f"schema version {version} is newer than this driftwarden's {SCHEMA_VERSION}"
                )
            for script in (SCHEMA, *(MIGRATIONS[v] for v in range(version, SCHEMA_VERSION))):
                for statement in sql_statements(script):
                    self._db.execute(statement)
            if version != SCHEMA_VERSION:
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- checkpoints ---------------------------------------------------------------------------

    def checkpoint(
        self,
        positions: Mapping[str, int],
        next_index: int,
        pipelines: Mapping[str, Any] | Iterable[tuple[str, Any]],
        intents: Sequence[Intent] = (),
        audit: Sequence[tuple[str | None, str, str | None, Mapping[str, Any]]] = (),
        pending: Mapping[str, PendingDelta] | None = None,
        outbox: Sequence[OutboxRow] = (),
        marks: Mapping[str, int] | None = None,
        watermark: float | None = None,
        segments: Mapping[str, list[str]] | None = None,
        waiting: WaitingDelta | None = None,
    ) -> list[str]:
        """Write one checkpoint; return the keys of the intents that are new. ``pipelines`` maps a
        model to its state, or yields (model, state) pairs: each state is serialized and written
        before the next is made, so a checkpoint never holds every model's state at once.
        ``pending`` holds each model's changes to its unmatched join halves: one entry of its
        ``pending_log`` per checkpoint (a ``replace`` delta starts the log afresh). ``outbox``
        rows (notifications to deliver) are written in the same transaction, each once. ``marks``
        are the file sinks' lengths once flushed (:meth:`marks`: what a restart keeps of them);
        ``segments`` the labeled-data segment files of the models whose files changed (:meth:`segments`);
        ``waiting`` the change of the events that wait (:meth:`waiting`)."""
        now = time.time()
        new: list[str] = []
        with self._tx() as db:
            old = self._get(db, "positions") or {}
            db.execute(
                "INSERT OR REPLACE INTO checkpoint VALUES ('positions', ?)", (orjson.dumps({**old, **positions}),)
            )
            db.execute("INSERT OR REPLACE INTO checkpoint VALUES ('next_index', ?)", (orjson.dumps(next_index),))
            if marks:
                old_marks = self._get(db, "sinks") or {}
                db.execute(
                    "INSERT OR REPLACE INTO checkpoint VALUES ('sinks', ?)", (orjson.dumps({**old_marks, **marks}),)
                )
            if watermark is not None:
                db.execute("INSERT OR REPLACE INTO checkpoint VALUES ('watermark', ?)", (orjson.dumps(watermark),))
            for model, names in (segments or {}).items():
                db.execute(
                    "INSERT OR REPLACE INTO checkpoint VALUES (?, ?)", (f"segments:{model}", orjson.dumps(names))
                )
            if waiting is not None:
                db.executemany("DELETE FROM waiting WHERE model = ?", [(m,) for m in waiting.cleared])
                db.executemany(
                    "INSERT INTO waiting (model, n, rows) VALUES (?, ?, ?)",
                    [(m, n, blob) for m, (n, blob) in waiting.added.items()],
                )
            stored: dict[str, set[str]] = {}
            for model, state in pipelines.items() if isinstance(pipelines, Mapping) else pipelines:
                stored[model] = self._write_state(db, model, state)
            for model, delta in (pending or {}).items():
                if delta.replace:
                    db.execute("DELETE FROM pending_log WHERE model = ?", (model,))
                elif not any(delta.added.values()) and not any(delta.removed.values()):
                    continue
                db.execute(
                    "INSERT INTO pending_log VALUES "
                    "(?, (SELECT coalesce(max(seq), 0) + 1 FROM pending_log WHERE model = ?), ?, ?)",
                    (
                        model,
                        model,
                        orjson.dumps(delta.added, option=orjson.OPT_SERIALIZE_NUMPY, default=str),
                        orjson.dumps(delta.removed),
                    ),
                )
            for it in intents:
                cur = db.execute(
                    "INSERT OR IGNORE INTO actions "
                    "(key, model, rule, action, type, at, ts, state, created, updated, info)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        it.key,
                        it.model,
                        it.rule,
                        it.action,
                        it.type,
                        it.at,
                        it.ts,
                        ActionState.PENDING,
                        now,
                        now,
                        orjson.dumps(dict(it.info)),
                    ),
                )
                if cur.rowcount:
                    new.append(it.key)
            for audit_model, kind, audit_key, payload in audit:
                db.execute(
                    "INSERT INTO audit (wall, model, type, key, payload) VALUES (?, ?, ?, ?, ?)",
                    (now, audit_model, kind, audit_key, orjson.dumps(dict(payload), option=orjson.OPT_SERIALIZE_NUMPY)),
                )
            for row in outbox:
                db.execute(
                    "INSERT OR IGNORE INTO outbox (key, notification, model, destination, status, state, next_at,"
                    " created, updated, payload) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
                    (
                        row.key,
                        row.notification,
                        row.model,
                        row.destination,
                        row.status,
                        now,
                        now,
                        now,
                        orjson.dumps(dict(row.payload), option=orjson.OPT_SERIALIZE_NUMPY),
                    ),
                )
        self._parts.update(stored)  # committed
        return new

    def _write_state(self, db: sqlite3.Connection, model: str, state: Any) -> set[str]:
        """Write one pipeline state: each :class:`~driftwarden.detectors.base.Part` in it once, as its
        own row of ``parts`` (the state refers to it by content key), the rest as the state's row.
        Parts no longer referred to are deleted. Returns the model's part keys now stored."""
        refs: dict[str, bytes] = {}

        def part(obj: Any) -> Any:
            if isinstance(obj, Part):
                if obj.key is None:
                    obj.key = hashlib.blake2b(obj.blob, digest_size=12).hexdigest()
                refs[obj.key] = obj.blob
                return {PART_REF: obj.key}
            kinds: tuple[type[Any], ...] = (dict, str, int, float, list)
            for kind in kinds:  # other subclasses of builtins: as their base
                if isinstance(obj, kind):
                    return kind(obj)
            raise TypeError(f"cannot store a {type(obj).__name__} in a pipeline state")

        value = orjson.dumps(state, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_PASSTHROUGH_SUBCLASS, default=part)
        db.execute("INSERT OR REPLACE INTO checkpoint VALUES (?, ?)", (f"pipeline:{model}", value))
        known = self._parts.get(model)
        if known is None:
            known = {k for (k,) in db.execute("SELECT key FROM parts WHERE model = ?", (model,))}
        added = [(model, k, v) for k, v in refs.items() if k not in known]
        if added:
            db.executemany("INSERT OR REPLACE INTO parts VALUES (?, ?, ?)", added)
        gone = [(model, k) for k in known if k not in refs]
        if gone:
            db.executemany("DELETE FROM parts WHERE model = ? AND key = ?", gone)
        return set(refs)

    # -- the outbox ----------------------------------------------------------------------------

    def outbox(self, where: str = "1", args: Sequence[Any] = (), limit: int = 10_000) -> list[dict[str, Any]]:
        """Outbox rows (oldest first), ``payload`` decoded."""
        with self._lock:
            cur = self._db.execute(
                f"SELECT * FROM outbox WHERE {where} ORDER BY created, key LIMIT ?", (*tuple(args), limit)
            )
            cols = [c[0] for c in cur.description]
            rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
        for r in rows:
            r["payload"] = orjson.loads(r["payload"])
        return rows

    def outbox_due(self, now: float, limit: int = 100) -> list[dict[str, Any]]:
        """Pending rows whose next try is due."""
        return self.outbox("state = 'pending' AND next_at <= ?", (now,), limit)

    def outbox_next(self) -> float | None:
        """When the earliest pending row is due (None: nothing pending)."""
        with self._lock:
            row = self._db.execute("SELECT min(next_at) FROM outbox WHERE state = 'pending'").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def outbox_update(
        self, key: str, state: str, *, next_at: float | None = None, error: str | None = None, attempt: bool = True
    ) -> None:
        """Record a try: ``delivered``, ``failed`` (permanently, with ``error``) or still ``pending``
        (retried at ``next_at``); a delivered or failed row also goes into the audit log."""
        if state not in OUTBOX_STATES:
            raise ValueError(f"outbox state {state!r}; one of {', '.join(OUTBOX_STATES)}")
        now = time.time()
        with self._tx() as db:
            db.execute(
                "UPDATE outbox SET state = ?, attempts = attempts + ?, next_at = COALESCE(?, next_at), error = ?,"
                " updated = ? WHERE key = ?",
                (state, int(attempt), next_at, error, now, key),
            )
            if state != "pending":
                db.execute(
                    "INSERT INTO audit (wall, model, type, key, payload) SELECT ?, model, 'notification', key, ?"
                    " FROM outbox WHERE key = ?",
                    (now, orjson.dumps({"state": state, "error": error}), key),
                )

    def outbox_counts(self) -> dict[str, int]:
        """Rows per state (pending, delivered, failed)."""
        with self._lock:
            rows = self._db.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall()
        return {**dict.fromkeys(OUTBOX_STATES, 0), **{s: int(n) for s, n in rows}}

    @staticmethod
    def _get(db: sqlite3.Connection, key: str) -> Any:
        row = db.execute("SELECT value FROM checkpoint WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            return orjson.loads(row[0])
        except orjson.JSONDecodeError as e:
            path = db.execute("PRAGMA database_list").fetchone()[2]
            raise StateCorrupt(path, f"checkpoint entry {key!r} is not valid JSON ({e})") from None

    def check(self) -> list[str]:
        """Every problem found in the checkpoint entries (each must decode), as ``key: problem`` lines."""
        problems = []
        with self._lock:
            for key, value in self._db.execute("SELECT key, value FROM checkpoint ORDER BY key"):
                try:
                    orjson.loads(value)
                except orjson.JSONDecodeError as e:
                    problems.append(f"checkpoint entry {key!r}: not valid JSON ({e})")
        return problems

    def drop_checkpoint_entry(self, key: str) -> None:
        """Remove one checkpoint entry (``state repair``: that model's monitors then start afresh)."""
        with self._tx() as db:
            db.execute("DELETE FROM checkpoint WHERE key = ?", (key,))
            if key.startswith("pipeline:"):
                db.execute("DELETE FROM parts WHERE model = ?", (key.removeprefix("pipeline:"),))
        self._parts.pop(key.removeprefix("pipeline:"), None)

    def positions(self) -> dict[str, int]:
        with self._lock:
            return self._get(self._db, "positions") or {}

    def next_index(self) -> int:
        with self._lock:
            return self._get(self._db, "next_index") or 0

    def set_marks(self, marks: Mapping[str, int]) -> None:
        """Record file sinks' lengths outside a checkpoint (a sink's first start: what it held before)."""
        with self._tx() as db:
            old = self._get(db, "sinks") or {}
            db.execute("INSERT OR REPLACE INTO checkpoint VALUES ('sinks', ?)", (orjson.dumps({**old, **marks}),))

    def segments(self) -> dict[str, list[str]]:
        """Model → the names of its labeled-data segment files at the last checkpoint that changed them."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, value FROM checkpoint WHERE key >= 'segments:' AND key < 'segments;'"
            ).fetchall()
        out = {}
        for key, value in rows:
            try:
                out[key.removeprefix("segments:")] = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue  # named by check()
        return out

    def forget_segments(self, model: str, names: Iterable[str]) -> None:
        """Drop ``names`` from ``model``'s recorded segments (``state repair``: they are gone)."""
        gone = set(names)
        with self._tx() as db:
            listed = self._get(db, f"segments:{model}") or []
            kept = [n for n in listed if n not in gone]
            db.execute("INSERT OR REPLACE INTO checkpoint VALUES (?, ?)", (f"segments:{model}", orjson.dumps(kept)))

    def marks(self) -> dict[str, int]:
        """File sink (its path) → its length in bytes at the last checkpoint: anything past it was
        written for records the source replays, and a restart cuts it off (no line twice)."""
        with self._lock:
            return self._get(self._db, "sinks") or {}

    def silences(self) -> dict[tuple[str, str], float]:
        """Operators' silences: (model, rule) → the wall time it ends (the expired ones included)."""
        with self._lock:
            saved = self._get(self._db, "silences") or []
        return {(str(m), str(r)): float(until) for m, r, until in saved}

    def set_silences(self, book: Mapping[tuple[str, str], float]) -> None:
        """Replace the stored silences (an operator's call, outside a checkpoint: durable once answered)."""
        rows = sorted([m, r, until] for (m, r), until in book.items())
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO checkpoint VALUES ('silences', ?)", (orjson.dumps(rows),))

    def watermark(self) -> float | None:
        """The event-time watermark of the last checkpoint (None before the first event time)."""
        with self._lock:
            value = self._get(self._db, "watermark")
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None

    def pending(self, model: str) -> dict[str, list[tuple[Any, ...]]]:
        """``model``'s unmatched join halves per side, in arrival order: its log replayed (each
        entry deletes ids, then appends halves; a half whose id is held moves to the end)."""
        held: dict[str, dict[str, tuple[Any, ...]]] = {"predictions": {}, "labels": {}}
        with self._lock:
            rows = self._db.execute(
                "SELECT added, removed FROM pending_log WHERE model = ? ORDER BY seq", (model,)
            ).fetchall()
        for added, removed in rows:
            for side, ids in orjson.loads(removed).items():
                for i in ids:
                    held[side].pop(i, None)
            for side, halves in orjson.loads(added).items():
                for half in halves:
                    held[side].pop(half[_HALF_ID], None)
                    held[side][half[_HALF_ID]] = tuple(half)
        return {side: list(halves.values()) for side, halves in held.items()}

    def waiting(self) -> dict[str, list[bytes]]:
        """The serialized rows of the events that wait (see :class:`WaitingDelta`), per model in the
        order the models began to wait, each model's in the order written."""
        with self._lock:
            rows = self._db.execute("SELECT model, rows FROM waiting ORDER BY seq").fetchall()
        out: dict[str, list[bytes]] = {}
        for model, blob in rows:
            out.setdefault(model, []).append(blob)
        return out

    def waiting_counts(self) -> dict[str, int | None]:
        """How many waiting rows the store holds per model, in the order the models began to wait,
        without reading them; None for a model with an entry of a version-3 store (not counted).

        >>> s = Store(":memory:")
        >>> _ = s.checkpoint({}, 0, {}, waiting=WaitingDelta({"b": (2, b"[]"), "a": (1, b"[]")}, ()))
        >>> _ = s.checkpoint({}, 0, {}, waiting=WaitingDelta({"b": (3, b"[]")}, ()))
        >>> s.waiting_counts(), len(s.waiting_of("b"))
        ({'b': 5, 'a': 1}, 2)
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT model, sum(n), count(*) = count(n) FROM waiting GROUP BY model ORDER BY min(seq)"
            ).fetchall()
        return {model: int(n) if counted else None for model, n, counted in rows}

    def waiting_of(self, model: str) -> list[bytes]:
        """The serialized rows of ``model``'s waiting events, in the order written."""
        with self._lock:
            return [r for (r,) in self._db.execute("SELECT rows FROM waiting WHERE model = ? ORDER BY seq", (model,))]

    def admit(self, models: Mapping[str, Mapping[str, Any]]) -> None:
        """Remember the models a fleet policy admitted as they first appeared (the policy file and
        the attributes of the event that matched), so a restart routes them the same way at once."""
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO checkpoint VALUES (?, ?)",
                [(f"{ADMITTED}{m}", orjson.dumps(dict(v), default=str)) for m, v in models.items()],
            )

    def admitted(self) -> dict[str, dict[str, Any]]:
        """Every model :meth:`admit` wrote, in the order admitted."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, value FROM checkpoint WHERE key >= ? AND key < ? ORDER BY rowid",
                (ADMITTED, ADMITTED[:-1] + chr(ord(ADMITTED[-1]) + 1)),
            ).fetchall()
        return {k[len(ADMITTED) :]: orjson.loads(v) for k, v in rows}

    def pipeline_state(self, model: str) -> dict[str, Any] | None:
        """The model's last checkpointed state, its parts in place (as :class:`Part` again, so
        that the next checkpoint does not write them anew)."""
        with self._lock:
            # One read transaction: a checkpoint of another process between the two reads would replace the parts
            # the state names (a reader polling a running daemon's store saw "part ... is missing").
            snapshot = not self._db.in_transaction
            if snapshot:
                self._db.execute("BEGIN")
            try:
                state = self._get(self._db, f"pipeline:{model}")
                rows = (
                    []
                    if state is None
                    else self._db.execute("SELECT key, value FROM parts WHERE model = ?", (model,)).fetchall()
                )
            finally:
                if snapshot:
                    self._db.execute("COMMIT")
            if state is None:
                return None
        parts: dict[str, Part] = {}
        for key, blob in rows:
            p = parts[key] = Part(blob=blob)
            p.key = key
        return _resolve(state, parts, f"{self.path}: the state of {model}")  # type: ignore[no-any-return]

    # -- actions -------------------------------------------------------------------------------

    def update_action(
        self,
        key: str,
        state: ActionState,
        info: Mapping[str, Any] | None = None,
        *,
        version: str | None = None,
        attempt: bool = False,
    ) -> None:
        with self._tx() as db:
            row = db.execute("SELECT info FROM actions WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise KeyError(f"no action {key!r}")
            merged = {**orjson.loads(row[0]), **(info or {})}
            db.execute(
                "UPDATE actions SET state = ?, info = ?, updated = ?, version = COALESCE(?, version),"
                " attempts = attempts + ? WHERE key = ?",
                (
                    state,
                    orjson.dumps(merged, option=orjson.OPT_SERIALIZE_NUMPY),
                    time.time(),
                    version,
                    int(attempt),
                    key,
                ),
            )
            db.execute(
                "INSERT INTO audit (wall, model, type, key, payload) "
                "SELECT ?, model, 'action', key, ? FROM actions WHERE key = ?",
                (time.time(), orjson.dumps({"state": state, **(info or {})}, option=orjson.OPT_SERIALIZE_NUMPY), key),
            )

    def put_actions(self, records: Sequence[Mapping[str, Any]], note: Mapping[str, Any]) -> None:
        """Write action records another daemon kept (:meth:`ActionRecord.as_dict` output, handed
        over with a Kafka partition), replacing this store's rows of the same keys; each is audited
        with ``note``."""
        with self._tx() as db:
            for r in records:
                db.execute(
                    f"INSERT OR REPLACE INTO actions ({_ACTION_COLUMNS}) VALUES ({', '.join('?' * 13)})",
                    (
                        r["key"],
                        r["model"],
                        r["rule"],
                        r["action"],
                        r["type"],
                        int(r["at"]),
                        float(r["ts"]),
                        str(r["state"]),
                        r.get("version"),
                        int(r.get("attempts") or 0),
                        float(r["created"]),
                        time.time(),
                        orjson.dumps(r.get("info") or {}, option=orjson.OPT_SERIALIZE_NUMPY),
                    ),
                )
                db.execute(
                    "INSERT INTO audit (wall, model, type, key, payload) VALUES (?, ?, 'action', ?, ?)",
                    (time.time(), r["model"], r["key"], orjson.dumps({"state": str(r["state"]), **note})),
                )

    def record(self, model: str | None, type: str, key: str | None, payload: Mapping[str, Any]) -> None:
        """Append one entry to the audit log outside a checkpoint (an operator's call, say)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO audit (wall, model, type, key, payload) VALUES (?, ?, ?, ?, ?)",
                (time.time(), model, type, key, orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)),
            )

    def action(self, key: str) -> ActionRecord | None:
        rows = self._select("key = ?", (key,))
        return rows[0] if rows else None

    def actions(self, *, model: str | None = None, type: str | None = None) -> list[ActionRecord]:
        """Every action (of one ``model``, of one ``type``: ``alert``, ``retrain``), by decision
        index and key."""
        where = {"model = ?": model, "type = ?": type}
        given = {k: v for k, v in where.items() if v is not None}
        return self._select(" AND ".join(given) or "1", tuple(given.values()))

    def unfinished_actions(self) -> list[ActionRecord]:
        """The actions not :attr:`~ActionRecord.finished`: those a restarted daemon still acts on."""
        marks = ",".join("?" * len(TERMINAL_STATES))
        return [a for a in self._select(f"state NOT IN ({marks})", sorted(TERMINAL_STATES)) if not a.finished]

    def _select(self, where: str, args: Sequence[Any]) -> list[ActionRecord]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_ACTION_COLUMNS} FROM actions WHERE {where} ORDER BY at, key", tuple(args)
            ).fetchall()
        return [
            ActionRecord(
                key,
                model,
                rule,
                action,
                type_,
                at,
                ts,
                _state(state),
                version,
                attempts,
                created,
                updated,
                orjson.loads(info),
            )
            for key, model, rule, action, type_, at, ts, state, version, attempts, created, updated, info in rows
        ]

    def audit(self, model: str | None = None, limit: int = 1000, key: str | None = None) -> list[dict[str, Any]]:
        """The most recent ``limit`` entries (of one model, of one action key), oldest first."""
        with self._lock:
            q = "SELECT seq, wall, model, type, key, payload FROM audit"
            where, args = [], []
            if model:
                where.append("model = ?")
                args.append(model)
            if key:
                where.append("key = ?")
                args.append(key)
            if where:
                q += " WHERE " + " AND ".join(where)
            rows = self._db.execute(q + " ORDER BY seq DESC LIMIT ?", (*args, limit)).fetchall()
        return [
            {"seq": s, "wall": w, "model": m, "type": t, "key": k, **orjson.loads(p)}
            for s, w, m, t, k, p in reversed(rows)
        ]


def _holds_state(folder: Path) -> bool:
    """The folder holds what a daemon wrote beside its store (labeled-data segments, registry versions)."""
    return any(p.is_file() for sub in ("buffers", "registry") for p in (folder / sub).rglob("*"))


def private_file(path: Path) -> None:
    """Create ``path``'s folder (0700) and the file itself (0600) unless they exist; SQLite gives its
    -wal and -shm files the database's mode."""
    path.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, FILE_MODE))


def sql_statements(script: str) -> Iterator[str]:
    r"""The statements of an SQL ``script``, one by one (``executescript`` would commit the caller's transaction).

    >>> list(sql_statements("CREATE TABLE a (x); -- a comment; with a semicolon\nINSERT INTO a VALUES (';');"))
    ['CREATE TABLE a (x);', "-- a comment; with a semicolon\nINSERT INTO a VALUES (';');"]
    """
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending.strip()
            pending = ""


def _busy(e: sqlite3.DatabaseError) -> bool:
    """Whether SQLite refused because another connection holds a lock (SQLITE_BUSY and its extended codes)."""
    return (getattr(e, "sqlite_errorname", None) or "").startswith("SQLITE_BUSY")


_NESTED = frozenset({dict, list})


def _resolve(value: Any, parts: Mapping[str, Part], where: str) -> Any:
    """``value`` with every ``{"$part": key}`` replaced by that part (a list without a dict or a list
    in it, such as a list of numbers, is returned as it is: one C-level pass over it)."""
    if isinstance(value, dict):
        if len(value) == 1 and PART_REF in value:
            try:
                return parts[value[PART_REF]]
            except KeyError:
                raise StateCorrupt(where, f"part {value[PART_REF]} is missing") from None
        return {k: _resolve(v, parts, where) if type(v) in _NESTED else v for k, v in value.items()}
    if isinstance(value, list) and not _NESTED.isdisjoint(map(type, value)):
        return [_resolve(v, parts, where) for v in value]
    return value


def _state(value: str) -> ActionState | str:
    try:
        return ActionState(value)
    except ValueError:
        return value
