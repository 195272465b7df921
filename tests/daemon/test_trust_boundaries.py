"""Issue 14 item 13, trust boundaries: what the daemon stores is plain data, private to its user.

- the store holds no pickle and no encoded bytes after a run of every multivariate monitor, and a
  restarted daemon gives the signals of an uninterrupted one;
- state files are 0600 and folders 0700, the JSONL sinks (dead letters, alerts) included;
- the watermark is in the checkpoint: a restart does not re-learn it from its first batch.
"""

from __future__ import annotations

import base64
import pickle
import sqlite3
import stat
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from driftwarden.daemon.config import Settings
from driftwarden.daemon.io.private import FILE_MODE, FOLDER_MODE
from driftwarden.daemon.io.sources import MemorySource
from driftwarden.daemon.runtime import Daemon
from driftwarden.daemon.state.store import Store
from driftwarden.policies.loader import load_policy

from tests.detectors.test_conformance import plain_values

POLICY = (
    "version: 1\nmodel: m\nmonitors:\n"
    "  joint: {kind: domain_classifier, features: [a, b, c], window: {events: 300}, calibration_rounds: 3}\n"
    "  odd: {kind: anomaly_rate, features: [a, b], window: {events: 300}, n_trees: 4, height: 5, tree_window: 60}\n"
    "  each: {kind: feature_drift, features: [a, c], window: {events: 300}, method: ks}\n"
    "  edge: {kind: adwin, series: a}\n"
    "rules:\n"
    "  - {name: joint-drift, when: joint.drift, do: alert}\n"
)
BASE_TS = 1_700_000_000


def _events(n: int, seed: int = 3) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        shift = 1.0 if i >= n // 2 else 0.0
        a = float(rng.normal() + shift)
        features = {"a": a, "b": float(0.7 * a + rng.normal()), "c": str(rng.choice(["x", "y", "z"]))}
        out.append(orjson.dumps({"model": "m", "id": f"e{i}", "ts": BASE_TS + i, "features": features}))
    return out


def _daemon(tmp_path: Path, records: list[bytes], out: list[dict[str, Any]]) -> Daemon:
    policy = tmp_path / "p.yaml"
    tmp_path.mkdir(exist_ok=True)
    policy.write_text(POLICY)
    return Daemon(
        Settings(state_dir=tmp_path / "s", execute=False),
        MemorySource(records),
        [load_policy(policy)],
        listener=out.append,
    )


def _signals(out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in out if o.get("type") == "signal" and o.get("monitor") in ("joint", "odd", "each", "edge")]


def _run(tmp_path: Path, records: list[bytes]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    d = _daemon(tmp_path, records, out)
    d.run()
    d.close()
    return out


def _store_values(db: Path) -> list[tuple[str, Any]]:
    """Every value of every row of every table of the store, JSON decoded where it is JSON."""
    con = sqlite3.connect(db)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        values: list[tuple[str, Any]] = []
        for t in tables:
            for row in con.execute(f"SELECT * FROM {t}"):  # noqa: S608 - table names from sqlite_master
                for v in row:
                    if isinstance(v, bytes | str):
                        try:
                            v = orjson.loads(v)
                        except orjson.JSONDecodeError:
                            pass
                    values.append((t, v))
        return values
    finally:
        con.close()


def test_the_store_holds_no_pickle_and_a_restart_gives_the_uninterrupted_signals(tmp_path: Path) -> None:
    records = _events(3000)
    whole = _signals(_run(tmp_path / "whole", records))
    assert {s["monitor"] for s in whole} == {"joint", "odd", "each", "edge"}
    assert any(s["drift"] for s in whole if s["monitor"] == "joint")

    split = tmp_path / "split"
    first = _signals(_run(split, records[:1350]))  # stops inside the third window of every monitor
    second = _signals(_run(split, records))  # the restart skips what the checkpoint holds
    assert first + second == whole

    db = split / "s" / "state.db"
    raw = db.read_bytes() + b"".join(p.read_bytes() for p in db.parent.glob("state.db-*"))
    for opcode in (b"\x80\x04\x95", b"\x80\x05\x95", b"gASV"):  # pickle protocol 4/5, raw and base64
        assert opcode not in raw
    values = _store_values(db)
    states = [v for t, v in values if t == "checkpoint" and isinstance(v, dict) and "engine" in v]
    assert states, "no pipeline state in the store: the scan would be vacuous"
    problems = [p for t, v in values for p in plain_values(v, t)]
    assert problems == []


PERF_POLICY = (
    "version: 1\nmodel: m\nmonitors:\n"
    "  acc: {kind: performance, metric: accuracy, window: {events: 50}, threshold: 0.99}\n"
    "rules:\n"
    "  - {name: low-accuracy, when: acc.drift, do: alert}\n"
)


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root.parent)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


def test_state_files_are_0600_and_folders_0700_dead_letters_and_alerts_included(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    records = []
    for i in range(300):
        ts = BASE_TS + i
        records.append(orjson.dumps({"model": "m", "id": f"e{i}", "ts": ts, "prediction": int(i % 2), "features": {}}))
        records.append(orjson.dumps({"model": "m", "id": f"e{i}", "ts": ts + 1, "label": int(rng.random() < 0.5)}))
    records.append(b"{not json")
    (tmp_path / "p.yaml").write_text(PERF_POLICY)
    out = tmp_path / "out" / "sinks"  # folders that do not exist yet, outside the state folder
    d = Daemon(
        Settings(state_dir=tmp_path / "s", execute=True, dead_letters=out / "dead.jsonl", alerts=out / "alerts.jsonl"),
        MemorySource(records),
        [load_policy(tmp_path / "p.yaml")],
    )
    d.run()
    d.close()
    assert (out / "dead.jsonl").read_text().count("\n") == 1
    assert "low-accuracy" in (out / "alerts.jsonl").read_text()
    state = tmp_path / "s"
    assert any(p.suffix == ".json" for p in (state / "buffers").rglob("*")), "no labeled-data segment was written"
    modes = {**_modes(state), **_modes(tmp_path / "out")}
    wrong = {
        name: oct(mode)
        for name, mode in modes.items()
        if mode != (FOLDER_MODE if (tmp_path / name).is_dir() else FILE_MODE)
    }
    assert wrong == {}


def test_the_watermark_survives_a_restart(tmp_path: Path) -> None:
    """A restarted daemon judges event time against the watermark of its last checkpoint: a first
    batch of one record three days ahead is refused, not taken as the stream's start (it was: the
    watermark was learnt afresh from the first batch's median)."""
    (tmp_path / "p.yaml").write_text(POLICY)
    policy = load_policy(tmp_path / "p.yaml")
    settings = Settings(state_dir=tmp_path / "s", execute=False)
    records = _events(100)
    first = Daemon(settings, MemorySource(records), [policy])
    first.run()
    first.close()
    store = Store(settings.store_path, readonly=True)
    assert store.watermark() == BASE_TS + 99
    store.close()

    ahead = orjson.dumps({"model": "m", "id": "late", "ts": BASE_TS + 3 * 86_400, "features": {"a": 0.0}})
    again = Daemon(settings, MemorySource([*records, ahead]), [policy])
    stats = again.run()
    again.close()
    assert stats.dead_letters == 1
    dead = [orjson.loads(line) for line in settings.dead_letter_path.read_bytes().splitlines()]
    assert [d["code"] for d in dead] == ["ts_ahead"]


class _Payload:
    """Unpickling this writes a file: what a hostile state would do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.path, "pwned"))


def test_a_pickle_in_the_store_is_never_loaded_and_its_monitor_starts_afresh(tmp_path: Path, caplog: Any) -> None:
    """A state.db written by an older version (or edited by someone): the pickled monitor states
    are not unpickled; those monitors start afresh with a warning and the daemon runs on."""
    records = _events(900)
    _run(tmp_path, records[:600])
    db = tmp_path / "s" / "state.db"
    marker = tmp_path / "ran"
    con = sqlite3.connect(db)
    state = orjson.loads(con.execute("SELECT value FROM checkpoint WHERE key = 'pipeline:m'").fetchone()[0])
    hostile = base64.b64encode(pickle.dumps(_Payload(marker))).decode()
    monitors = state["engine"]["monitors"]
    monitors["joint"]["model"], monitors["odd"]["trees"], monitors["edge"]["river"] = hostile, hostile, [hostile]
    con.execute("UPDATE checkpoint SET value = ? WHERE key = 'pipeline:m'", (orjson.dumps(state),))
    con.commit()
    con.close()
    with caplog.at_level("WARNING", logger="driftwarden.policies"):
        out = _run(tmp_path, records)
    assert not marker.exists()
    afresh = {r.getMessage().split()[1] for r in caplog.records if "starts afresh" in r.getMessage()}
    assert afresh == {"joint", "odd", "edge"}
    assert any(s["monitor"] == "each" for s in _signals(out))  # the others resumed and the daemon ran on
