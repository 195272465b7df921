"""``driftwarden history`` and ``driftwarden models list|show|promote|rollback``.

The registry is a local directory (default ``.driftwarden/registry``) or MLflow's model
registry, given as ``--registry mlflow:<tracking uri>`` (e.g. ``mlflow:sqlite:///mlflow.db``;
needs the ``mlflow`` extra). ``--json`` prints one JSON object per line.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import orjson
from driftwarden.deploy.states import ActionState
from rich.console import Console
from rich.table import Table

DEFAULT_REGISTRY = ".driftwarden/registry"


def register(main: click.Group) -> None:
    """Add ``history`` and ``models`` to the ``driftwarden`` command group."""
    main.add_command(history)
    main.add_command(models)


def _echo_json(obj: Any) -> None:
    click.echo(orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY).decode())


# -- history -----------------------------------------------------------------------------------


@click.command()
@click.option("--state-dir", type=click.Path(path_type=Path), default=Path(".driftwarden"), show_default=True)
@click.option("--model", help="Only this model.")
@click.option("--key", help="Only this decision (idempotency key).")
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=100_000,
    show_default=True,
    help="The most recent N entries.",
)
@click.option(
    "--json",
    "json_mode",
    is_flag=True,
    help="One JSON object per line: the full record with its inputs and outcome.",
)
def history(state_dir: Path, model: str | None, key: str | None, limit: int, json_mode: bool) -> None:
    """The audit log: every drift signal, decision and action step with its inputs and outcome,
    oldest first."""
    from driftwarden.daemon.state.store import Store

    db = state_dir / "state.db"
    if not db.exists():
        raise click.UsageError(f"no daemon state in {state_dir} (no {db})")
    store = Store(db)
    try:
        rows = store.audit(model=model, limit=limit)
    finally:
        store.close()
    if key:
        rows = [r for r in rows if r.get("key") == key]
    if json_mode:
        for r in rows:
            _echo_json(r)
        return
    t = Table(header_style="bold")
    for c in ("seq", "model", "type", "key", "state", "version", "detail"):
        t.add_column(c, overflow="fold")
    for r in rows:
        state = r.get("state") or (r.get("monitor") if r["type"] == "signal" else r.get("rule")) or ""
        detail = str(r.get("reason") or "").splitlines()[0][:90] if r.get("reason") else ""
        t.add_row(
            str(r["seq"]),
            str(r.get("model")),
            r["type"],
            str(r.get("key") or ""),
            str(state),
            str(r.get("version") or ""),
            detail,
        )
    Console().print(t)


# -- models ------------------------------------------------------------------------------------


@click.group()
def models() -> None:
    """The model registry (local directory or MLflow): list, show, promote, roll back."""


def _registry_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--registry``, ``--state-dir`` and ``--config``, resolved to one registry location: ``--registry``, else
    the config's ``registry``, else ``<state dir>/registry`` (the state dir from the option or the config)."""

    @functools.wraps(command)
    def resolved(*args: Any, location: str | None, state_dir: Path | None, config_path: Path | None, **kw: Any) -> Any:
        return command(*args, location=registry_location(location, state_dir, config_path), **kw)

    for option in (
        click.option(
            "--config",
            "config_path",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="Daemon config: its registry (or its state_dir's).",
        ),
        click.option("--state-dir", type=click.Path(path_type=Path), help="State folder: the registry in it."),
        click.option(
            "--registry",
            "location",
            default=None,
            help="Registry directory, or mlflow:<tracking uri> for MLflow's model registry "
            f"[default: {DEFAULT_REGISTRY}].",
        ),
    ):
        resolved = option(resolved)
    return resolved


def registry_location(location: str | None, state_dir: Path | None, config_path: Path | None) -> str:
    """Where the registry is, from the options (see :func:`_registry_option`).

    >>> registry_location(None, Path("/var/lib/dw"), None), registry_location("mlflow:sqlite:///m.db", None, None)
    ('/var/lib/dw/registry', 'mlflow:sqlite:///m.db')
    """
    if location:
        return location
    if config_path is None and state_dir is None:
        return DEFAULT_REGISTRY
    from driftwarden.daemon.config import Settings

    try:
        settings = Settings.load(config_path, state_dir=state_dir)
    except (ValueError, OSError) as e:
        raise click.UsageError(str(e)) from None
    return settings.registry_location


def _open(location: str) -> Any:
    from driftwarden.deploy.registry import open_registry

    try:
        return open_registry(location)
    except ImportError as e:
        raise click.UsageError(f"MLflow is not installed ({e}); pip install 'driftwarden[mlflow]'") from None


def _row(reg: Any, model: str, v: Any, aliases: dict[str, str]) -> dict[str, Any]:
    meta = v.metadata
    return {
        "model": model,
        "version": v.version,
        "aliases": sorted(a for a, ver in aliases.items() if ver == v.version),
        "created": meta.get("created"),
        "parent": meta.get("parent"),
        "decision": meta.get("decision"),
        "metrics": meta.get("metrics"),
    }


@models.command("list")
@_registry_option
@click.option("--model", help="Only this model.")
@click.option("--json", "json_mode", is_flag=True)
def models_list(location: str, model: str | None, json_mode: bool) -> None:
    """Every model and version with its aliases, lineage and gate metrics."""
    reg = _open(location)
    rows = []
    for name in [model] if model else reg.models():
        aliases = reg.aliases(name)
        rows += [_row(reg, name, v, aliases) for v in reg.versions(name)]
    if json_mode:
        for r in rows:
            _echo_json(r)
        return
    t = Table(header_style="bold")
    for c in ("model", "version", "aliases", "created", "parent", "decision", "metrics"):
        t.add_column(c, overflow="fold")
    for r in rows:
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in (r["metrics"] or {}).items())
        t.add_row(
            r["model"],
            r["version"],
            ", ".join(r["aliases"]),
            str(r["created"] or ""),
            str(r["parent"] or ""),
            str(r["decision"] or ""),
            metrics,
        )
    Console().print(t)


@models.command("show")
@_registry_option
@click.argument("model")
@click.argument("version", default="champion")
@click.option("--json", "json_mode", is_flag=True)
def models_show(location: str, model: str, version: str, json_mode: bool) -> None:
    """One version (an id like v0003, or an alias; default: the champion) with all its metadata."""
    reg = _open(location)
    v = _resolve(reg, model, version)
    out = {
        "model": model,
        "version": v.version,
        "path": str(v.path),
        "aliases": sorted(a for a, ver in reg.aliases(model).items() if ver == v.version),
        "metadata": dict(v.metadata),
    }
    if json_mode:
        _echo_json(out)
    else:
        Console().print(out)


@models.command("promote")
@_registry_option
@click.argument("model")
@click.argument("version")
@click.option(
    "--serving",
    type=click.Path(path_type=Path),
    help="Also deploy it to this serving directory (atomic switch).",
)
@click.option("--json", "json_mode", is_flag=True)
def models_promote(location: str, model: str, version: str, serving: Path | None, json_mode: bool) -> None:
    """Make VERSION the champion (the old one becomes 'previous'); with --serving, deploy it
    first."""
    from driftwarden.deploy.registry import CHAMPION, PREVIOUS
    from driftwarden.deploy.targets import LocalTarget

    reg = _open(location)
    v = _resolve(reg, model, version)
    old = reg.aliases(model).get(CHAMPION)
    if serving is not None:
        LocalTarget(serving).deploy(v)
    if old and old != v.version:
        reg.set_alias(model, PREVIOUS, old)
    reg.set_alias(model, CHAMPION, v.version)
    out = {
        "model": model,
        "state": ActionState.PROMOTED,
        "version": v.version,
        "previous": old,
        "served_from": str(serving) if serving else None,
    }
    if json_mode:
        _echo_json(out)
    else:
        click.echo(
            f"{model}: {v.version} is the champion (was {old or 'none'})"
            + (f", serving from {serving}" if serving else "")
        )


@models.command("rollback")
@_registry_option
@click.argument("model")
@click.option("--serving", type=click.Path(path_type=Path), help="Also redeploy to this serving directory.")
@click.option("--reason", default="manual rollback", show_default=True)
@click.option("--json", "json_mode", is_flag=True)
def models_rollback(location: str, model: str, serving: Path | None, reason: str, json_mode: bool) -> None:
    """Go back to the previous champion (exit 1 when there is none)."""
    from driftwarden.deploy.lifecycle import rollback
    from driftwarden.deploy.targets import LocalTarget

    reg = _open(location)
    outcome = rollback(model, reg, LocalTarget(serving) if serving else None, lambda state, info: None, reason)
    if json_mode:
        _echo_json(outcome.to_json())
    else:
        click.echo(f"{model}: {outcome.state}: {outcome.reason}")
    if outcome.state != ActionState.ROLLED_BACK:
        raise SystemExit(1)


def _resolve(reg: Any, model: str, version: str) -> Any:
    try:
        if version.startswith("v") and version[1:].isdigit():
            return reg.get(model, version)
        found = reg.alias(model, version)
    except (KeyError, ValueError) as e:
        raise click.UsageError(str(e)) from None
    if found is None:
        raise click.UsageError(f"model {model!r} has no alias {version!r} (aliases: {reg.aliases(model) or 'none'})")
    return found
