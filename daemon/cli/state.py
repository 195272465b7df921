"""``driftwarden state check`` and ``driftwarden state repair``: find damaged state, and set it aside.

``check`` opens the store (integrity check, schema version), decodes every checkpoint entry and reads every
labeled-data segment in full; it prints each problem and exits 0 when there is none, else 65. ``repair`` moves
what is damaged into ``<state>/quarantine/<time>/`` (never deletes it) and says exactly what was lost: a garbled
``state.db`` loses everything it held (positions, monitor state, actions, audit); a garbled checkpoint entry
loses that one model's monitor and rule state (its monitors start afresh); a garbled segment loses its rows for
retraining; a segment the checkpoint lists that is gone (deleted from outside) loses its rows, and repair makes
the list forget it. Stop the daemon first: both take the state folder's lock.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import click

EXIT_CORRUPT = 65
"""The state is damaged (sysexits EX_DATAERR): ``driftwarden run`` refuses to start, ``state check`` found it."""
DEFAULT_STATE_DIR = Path(".driftwarden")


@dataclass(frozen=True)
class Problem:
    path: Path
    what: str
    loses: str
    entry: str | None = None  # a checkpoint entry's key, for entries inside a readable store
    missing: str | None = None  # the model of a segment the checkpoint lists that is gone


def find_problems(state_dir: Path) -> list[Problem]:
    """Every damaged part of a state folder (reads it all; the daemon at start reads less)."""
    from driftwarden.daemon.state.labeled_buffer import Segment, missing_segments
    from driftwarden.daemon.state.store import StateCorrupt, Store

    problems: list[Problem] = []
    db = state_dir / "state.db"
    if db.exists():
        try:
            store = Store(db)
        except StateCorrupt as e:
            problems.append(
                Problem(db, e.problem, "all of state.db: positions, monitor and rule state, actions, audit")
            )
        else:
            for line in store.check():
                key = line.split("'")[1]
                problems.append(Problem(db, line, f"the state of {key.removeprefix('pipeline:')}", entry=key))
            for model, names in store.segments().items():
                for gone in missing_segments(state_dir / "buffers" / model, names):
                    problems.append(
                        Problem(
                            gone.path,
                            "labeled-data segment is missing (deleted?)",
                            f"{gone.rows} labeled rows of {model} (for retraining)",
                            missing=model,
                        )
                    )
            store.close()
    for path in sorted((state_dir / "buffers").glob("*/*.json")):
        seg = Segment.parse(path)
        if seg is None:
            continue
        try:
            seg.read()
        except StateCorrupt as e:
            problems.append(Problem(path, e.problem, f"{seg.rows} labeled rows of {path.parent.name} (for retraining)"))
    return problems


def _state_dir(state_dir: Path | None) -> Path:
    return state_dir if state_dir is not None else DEFAULT_STATE_DIR


@click.group("state")
def state() -> None:
    """Check the state folder for damage, and repair it."""


@state.command("check")
@click.option("--state-dir", type=click.Path(path_type=Path), help="State folder (default .driftwarden).")
def state_check(state_dir: Path | None) -> None:
    """Report damaged state (exit 0: none; 65: some)."""
    problems = find_problems(_state_dir(state_dir))
    for p in problems:
        click.echo(f"{p.path}: {p.what} (repair would lose {p.loses})")
    if problems:
        raise SystemExit(EXIT_CORRUPT)
    click.echo(f"{_state_dir(state_dir)}: no damage found")


@state.command("repair")
@click.option("--state-dir", type=click.Path(path_type=Path), help="State folder (default .driftwarden).")
def state_repair(state_dir: Path | None) -> None:
    """Quarantine what is damaged and report exactly what was lost (stop the daemon first)."""
    from driftwarden.daemon.state.lock import StateLock, StateLocked
    from driftwarden.daemon.state.store import Store

    folder = _state_dir(state_dir)
    try:
        lock = StateLock.acquire(folder)
    except StateLocked as e:
        raise click.ClickException(str(e)) from None
    with lock:
        problems = find_problems(folder)
        if not problems:
            click.echo(f"{folder}: no damage found, nothing changed")
            return
        quarantine = folder / "quarantine" / time.strftime("%Y%m%dT%H%M%S")
        quarantine.mkdir(parents=True, exist_ok=True)
        for p in problems:
            if p.entry is not None:
                Store(p.path).drop_checkpoint_entry(p.entry)
            elif p.missing is not None:  # nothing to set aside: the list forgets it
                store = Store(folder / "state.db")
                store.forget_segments(p.missing, [p.path.name])
                store.close()
            else:
                for part in (p.path, *(p.path.with_name(p.path.name + s) for s in ("-wal", "-shm"))):
                    if part.exists():
                        rel = part.relative_to(folder)
                        (quarantine / rel).parent.mkdir(parents=True, exist_ok=True)
                        shutil.move(part, quarantine / rel)
            click.echo(f"repaired {p.path}: {p.what}; lost {p.loses}")
        click.echo(f"damaged files moved to {quarantine}")
