"""The ``driftwarden`` command line."""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import orjson
from driftwarden.daemon.cli.output import JsonLines, Timeline, alert_table, rule_table, summary_table
from driftwarden.daemon.cli.registry import register as register_registry_commands
from driftwarden.daemon.cli.state import state as state_commands
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

EXIT_INVALID = 2
EXIT_LOCKED = 75
"""Another daemon holds the state folder (sysexits EX_TEMPFAIL: a supervisor may retry once the holder is gone)."""
EXIT_UNAVAILABLE = 69
"""No Kafka broker at start, or none acknowledging outputs before a checkpoint (sysexits EX_UNAVAILABLE)."""

log = logging.getLogger("driftwarden")


def _logging(level: str, json_mode: bool) -> None:
    handler: logging.Handler
    if json_mode:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=True)
        handler.setFormatter(logging.Formatter("%(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    for noisy in ("apscheduler", "kafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    if logging.getLogger().level > logging.DEBUG:
        # kafka-python logs every failed connection as an error with its traceback, dozens a second
        # while a broker is gone; driftwarden.kafka says what matters (outage, wait, recovery) itself.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="driftwarden")
def main() -> None:
    """driftwarden watches production models — data drift, concept drift, bias and falling
    performance — and, when a policy says so, retrains, gates and redeploys them.

    Start with `driftwarden demo`; write a policy (see `driftwarden schema`), check it with
    `driftwarden validate`, backtest it with `driftwarden replay`, then `driftwarden run`.
    """


# -- demo ------------------------------------------------------------------------------------


@main.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("out/demo"),
    show_default=True,
    help="Folder for the demo's state, registry, serving directory, recorded events and report (recreated).",
)
@click.option("--json", "json_mode", is_flag=True, help="One JSON object per line instead of the timeline.")
@click.option(
    "--predictions", type=click.IntRange(2_000), default=16_000, show_default=True, help="Predictions in the stream."
)
@click.option(
    "--drift-at",
    type=click.IntRange(1_000),
    default=8_000,
    show_default=True,
    help="Prediction number where the world changes.",
)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--log-level", default="error", show_default=True, type=click.Choice(["debug", "info", "warning", "error"])
)
@click.option(
    "--live/--in-process",
    default=True,
    help="--live (default): the example model server, the daemon (`driftwarden run --follow`) and this "
    "client as three processes, deploying through the server's /reload; --in-process: one process, "
    "actions run synchronously.",
)
@click.option(
    "--serve",
    is_flag=True,
    help="Keep the daemon and its status page up after the scenario, until Ctrl-C (live mode).",
)
def demo(
    out: Path, json_mode: bool, predictions: int, drift_at: int, seed: int, log_level: str, live: bool, serve: bool
) -> None:
    """The whole lifecycle on bundled data: drift → decision → retrain → gate → deploy → recovery,
    in under a minute. The live daemon's status page is printed as it starts."""
    from driftwarden.examples.credit.demo import DemoError, run_demo, run_demo_live

    _logging(log_level, json_mode)
    if drift_at >= predictions:
        raise click.BadParameter(f"--drift-at ({drift_at}) must be below --predictions ({predictions})")
    if serve and not live:
        raise click.UsageError("--serve keeps the live daemon up; it does not go with --in-process")
    console = Console(stderr=json_mode)
    extra: dict[str, Any] = {}
    if live:
        extra["page"] = lambda url: console.print(
            f"status page: [bold]{url}[/]" + ("" if serve else " (while the demo runs)")
        )
        if serve:
            extra["serve"] = _serve_until_interrupted(console)
    runner: Any = functools.partial(run_demo_live, **extra) if live else run_demo
    try:
        if json_mode:
            sink = JsonLines()
            result = runner(out, n=predictions, drift_at=drift_at, seed=seed, listener=sink)
            sink({**result.summary, "at": None, "ts": None, "model": "credit", "demo": result.as_dict()})
            return
        timeline = Timeline(console)
        with _progress(console) as progress:
            task = progress.add_task("serving predictions", total=predictions)
            result = runner(
                out,
                n=predictions,
                drift_at=drift_at,
                seed=seed,
                listener=timeline,
                progress=lambda done, total: progress.update(task, completed=done),
            )
    except DemoError as e:
        raise click.ClickException(str(e)) from None
    console.print(summary_table(result.summary, "daemon"))
    console.print(_demo_table(result))
    if result.report:
        console.print(f"Evidently drift report of the window that triggered retraining: [bold]{result.report}[/]")
    console.print(
        f"Recorded stream: {out / 'events.jsonl'} — backtest the policy with\n"
        f"  driftwarden replay --policy examples/credit/policy.yaml --events {out / 'events.jsonl'}"
    )


def _serve_until_interrupted(console: Console) -> Any:
    def serve(url: str) -> None:
        console.print(f"the scenario is over; the daemon and its page stay up at [bold]{url}[/] until Ctrl-C")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            console.print("stopping")

    return serve


def _demo_table(r: Any) -> Table:
    t = Table(title="what happened", header_style="bold", show_header=True)
    t.add_column("step")
    t.add_column("value", justify="right")

    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3f}"
        if isinstance(v, dict):
            return ", ".join(f"{k} {x:.3f}" for k, x in v.items())
        return str(v)

    t.add_row("drift onset (event index)", fmt(r.drift_at))
    t.add_row("first drift signal (event index)", fmt(r.detected_at))
    t.add_row("retrain decision (event index)", fmt(r.retrain_at))
    t.add_row("candidate (held-out)", fmt(r.candidate))
    t.add_row("champion (held-out)", fmt(r.champion))
    t.add_row("deployed version", fmt(r.deployed_version))
    t.add_row("new model serving from (event index)", fmt(r.deployed_at))
    t.add_row("accuracy before drift", fmt(r.accuracy.get("before")))
    t.add_row("accuracy during drift", fmt(r.accuracy.get("during")))
    t.add_row("accuracy after redeploy", fmt(r.accuracy.get("after")))
    return t


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


# -- run -------------------------------------------------------------------------------------


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Daemon config (YAML): policies, source (file/kafka), state_dir, batch_size, sinks, backpressure. "
    "Kafka: source.bootstrap/topics/group_id/changelog_topic/labeled_topic/settings (SSL, SASL) and "
    "sinks.decisions_topic/dead_letter_topic/model_updated_topic; see examples/kafka/config.yaml.",
)
@click.option(
    "--policy",
    "policy_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Policy file (repeatable); adds to the config's.",
)
@click.option(
    "--events",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read events from this JSONL/CSV/Parquet file; repeat it for labels or features in other files "
    "(merged by event time).",
)
@click.option(
    "--pace", type=float, help="With --events: replay speed by event time (1 = real time, 0 = as fast as possible)."
)
@click.option(
    "--follow",
    is_flag=True,
    help="Follow the JSONL events file as it grows (tail -f; one file): never ends, runs until stopped.",
)
@click.option("--state-dir", type=click.Path(path_type=Path), help="State folder (default .driftwarden).")
@click.option("--dry-run", is_flag=True, help="Record and print decisions; execute no action.")
@click.option("--json", "json_mode", is_flag=True, help="One JSON object per line.")
@click.option("--count", type=int, help="Stop after this many records (testing).")
@click.option(
    "--http",
    "http_listen",
    metavar="HOST:PORT",
    help="Serve /metrics, /livez, /readyz, /api/v1 and the status page here (config: http.listen); "
    "admin calls need $DRIFTWARDEN_TOKEN when set.",
)
@click.option(
    "--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"])
)
def run(
    config_path: Path | None,
    policy_paths: tuple[Path, ...],
    events: tuple[Path, ...],
    pace: float | None,
    follow: bool,
    state_dir: Path | None,
    dry_run: bool,
    json_mode: bool,
    count: int | None,
    http_listen: str | None,
    log_level: str,
) -> None:
    """Run the daemon: consume events, monitor, decide, act. Stops cleanly on SIGTERM/SIGINT after the
    current batch (checkpointed); a restart resumes where it stopped."""
    from driftwarden.daemon.config import Settings
    from driftwarden.daemon.runtime import Daemon
    from driftwarden.daemon.scheduler import RuleScheduler
    from driftwarden.daemon.wiring import SourceError, open_source

    _logging(log_level, json_mode)
    stop = StopOnSignal.install()
    log.debug("starting up (SIGTERM or Ctrl-C stops cleanly from here on)")
    overrides: dict[str, Any] = {"state_dir": state_dir}
    if dry_run:
        overrides["execute"] = False
    try:
        settings = Settings.load(config_path, **overrides)
        if policy_paths:
            settings = settings.model_copy(update={"policies": [*settings.policies, *policy_paths]})
        if http_listen:
            settings = settings.model_copy(update={"http": settings.http.model_copy(update={"listen": http_listen})})
        if events:
            settings = settings.model_copy(
                update={
                    "source": settings.source.model_copy(
                        update={"kind": "file", "path": str(events[0]), "pace": pace or 0.0}
                    )
                }
            )
    except (ValueError, OSError) as e:
        raise click.UsageError(str(e)) from None
    if not settings.policies:
        raise click.UsageError("no policy: give --policy FILE or 'policies:' in --config")
    policies = _load_policies(settings.policies)
    lock = _lock_state(settings.state_dir)
    sink = JsonLines() if json_mode else Timeline(Console())
    try:
        with _stop_on_unreachable_broker():
            source = open_source(settings, events, pace=pace, follow=follow)
    except SourceError as e:
        raise click.UsageError(str(e)) from None
    with _refuse_corrupt_state(), _stop_on_storage_fault(settings.store_path), _stop_on_unreachable_broker():
        daemon = Daemon(settings, source, policies, listener=sink, watch_policies=True)
    scheduler = RuleScheduler(policies, daemon.tick)

    stop.attach(daemon.stop)
    server = _serve_http(daemon, settings)
    scheduler.start()
    log.info(
        "driftwarden running: %d polic%s, source %s, state in %s",
        len(policies),
        "y" if len(policies) == 1 else "ies",
        settings.source.kind,
        settings.state_dir,
    )
    try:
        with _refuse_corrupt_state(), _stop_on_storage_fault(settings.store_path), _stop_on_unreachable_broker():
            stats = daemon.run(count=count)
    finally:
        scheduler.stop()
        daemon.close()
        if server is not None:
            server.stop()
        lock.release()
    if json_mode:
        sink({**stats.summary(), "model": None, "at": None, "ts": None})
    else:
        Console().print(summary_table(stats.summary(), "run"))


class StopOnSignal:
    """SIGTERM and SIGINT handlers installed before start-up: a stop asked for while the daemon is being built
    is kept and carried out as soon as it exists (it then stops before its first batch, checkpoints, exits 0)."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._stop: Callable[[], None] | None = None

    @classmethod
    def install(cls) -> StopOnSignal:
        handler = cls()
        signal.signal(signal.SIGTERM, handler._on_signal)
        signal.signal(signal.SIGINT, handler._on_signal)
        return handler

    def attach(self, stop: Callable[[], None]) -> None:
        self._stop = stop
        if self.requested:
            stop()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.requested = signal.Signals(signum).name
        if self._stop is None:
            log.info("received %s during start-up: stopping once started", self.requested)
        else:
            log.info("received %s: stopping after the current batch", self.requested)
            self._stop()


@contextlib.contextmanager
def _refuse_corrupt_state() -> Iterator[None]:
    """Damaged state ends the run with one line naming the file and exit 65, not a traceback on every start."""
    from driftwarden.daemon.cli.state import EXIT_CORRUPT
    from driftwarden.daemon.state.store import StateCorrupt

    try:
        yield
    except StateCorrupt as e:
        click.echo(f"driftwarden: {e}", err=True)
        raise SystemExit(EXIT_CORRUPT) from None


@contextlib.contextmanager
def _stop_on_storage_fault(store: Path) -> Iterator[None]:
    """A full disk, a read-only folder, a refused permission or a failing device ends the run with one
    line and exit 74 (EX_IOERR): the state stays as of the last checkpoint, and a restart replays the
    rest once the operator has fixed the storage (docs/operating.md)."""
    from driftwarden.daemon.state.faults import EXIT_IO, storage_fault

    try:
        yield
    except (OSError, sqlite3.Error) as e:
        problem = storage_fault(e, str(store))
        if problem is None:
            raise
        click.echo(
            f"driftwarden: {problem}; stopped at the last checkpoint (nothing after it was committed: "
            "the source replays it); fix the storage and start again",
            err=True,
        )
        raise SystemExit(EXIT_IO) from None


@contextlib.contextmanager
def _stop_on_unreachable_broker() -> Iterator[None]:
    """No Kafka broker at start, a stop asked for while outputs to Kafka wait for an outage to end, or the
    labeled-rows topic not acknowledged within 30 s end the run with one line and exit 69
    (EX_UNAVAILABLE): a supervisor restarts it, and the restart replays from the last checkpoint. (Outages of the
    source and of the sinks while the daemon runs are waited out.)"""
    from driftwarden.daemon.io.kafka.settings import KafkaUnavailable  # loads no kafka-python

    try:
        yield
    except Exception as e:
        sinks = sys.modules.get("driftwarden.daemon.io.kafka.sink")  # loaded only when Kafka is used
        if not isinstance(e, KafkaUnavailable) and not (sinks is not None and isinstance(e, sinks.SinkError)):
            raise
        click.echo(f"driftwarden: {e}; stopped at the last checkpoint, start again once the broker answers", err=True)
        raise SystemExit(EXIT_UNAVAILABLE) from None


def _lock_state(state_dir: Path) -> Any:
    """This run's exclusive hold on its state folder; a second daemon there exits with EXIT_LOCKED."""
    from driftwarden.daemon.state.lock import StateLock, StateLocked

    try:
        with _stop_on_storage_fault(Path(state_dir) / "daemon.lock"):
            return StateLock.acquire(Path(state_dir))
    except StateLocked as e:
        click.echo(f"driftwarden: {e}", err=True)
        raise SystemExit(EXIT_LOCKED) from None


def _serve_http(daemon: Any, settings: Any) -> Any:
    """The HTTP face on ``settings.http.listen`` (started before the first poll), or None when off."""
    if not settings.http.listen:
        return None
    from driftwarden.daemon.http.face import serve

    try:
        return serve(daemon, settings.http.listen, token_file=settings.http.token_file)
    except (OSError, ValueError, RuntimeError) as e:
        daemon.close()
        raise click.UsageError(f"cannot serve HTTP on {settings.http.listen}: {e}") from None


def _load_policies(paths: list[Path]) -> list[Any]:
    from driftwarden.policies.loader import PolicyLoadError, load_policy

    loaded, failed = [], False
    for p in paths:
        try:
            loaded.append(load_policy(p))
        except PolicyLoadError as e:
            failed = True
            for err in e.errors:
                click.echo(str(err), err=True)
    from driftwarden.policies.fleet import conflicts

    for err in [] if failed else conflicts(loaded):  # two policies selecting a model equally specifically
        failed = True
        click.echo(str(err), err=True)
    if failed:
        raise SystemExit(EXIT_INVALID)
    return loaded


# -- replay ----------------------------------------------------------------------------------


@main.command()
@click.option(
    "--policy",
    "policy_paths",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="Policy file (repeatable).",
)
@click.option(
    "--events",
    required=True,
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Recorded events (JSONL, CSV or Parquet); repeat it for labels in another file (merged by event time).",
)
@click.option(
    "--json", "json_mode", is_flag=True, help="One JSON object per line: every signal and decision, then a summary."
)
@click.option("--batch-size", type=click.IntRange(1), default=1000, show_default=True)
@click.option(
    "--alerts",
    "alert_lines",
    is_flag=True,
    help="With --json: also an 'alert' line per alert that would have been sent (firing, resolved).",
)
def replay(
    policy_paths: tuple[Path, ...], events: tuple[Path, ...], json_mode: bool, batch_size: int, alert_lines: bool
) -> None:
    """Backtest policies on recorded events: monitors and rules run exactly as in the daemon, but
    nothing is executed or sent. Ends with a table per rule (firings, first and last event index)
    and the alerts the policies would have sent, firing and resolved (the summary's ``alerts``)."""
    from driftwarden.daemon.config import Settings
    from driftwarden.daemon.runtime import Daemon
    from driftwarden.daemon.wiring import SourceError, open_source
    from driftwarden.policies.engine import rule_summary

    _logging("warning", json_mode)
    policies = _load_policies(list(policy_paths))
    decisions: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    console = Console()
    sink = JsonLines() if json_mode else Timeline(console)

    def listener(item: dict[str, Any]) -> None:
        if item["type"] == "decision":
            decisions.append(item)
        if item["type"] == "alert":
            alerts.append(item)
            if json_mode and not alert_lines:
                return
        if item["type"] != "action":
            sink(item)

    with tempfile.TemporaryDirectory(prefix="driftwarden-replay-") as tmp:
        settings = Settings(state_dir=Path(tmp), batch_size=batch_size, execute=False)
        try:
            source = open_source(settings, events)
        except SourceError as e:
            raise click.UsageError(str(e)) from None
        daemon = Daemon(settings, source, policies, listener=listener)
        if json_mode:
            stats = daemon.run()
        else:
            counts = [_count_lines(e) for e in events]
            total = None if None in counts else sum(c for c in counts if c is not None)
            with _progress(console) as progress:
                task = progress.add_task(f"replaying {', '.join(e.name for e in events)}", total=total)
                while not source.exhausted:
                    daemon.run(count=batch_size)
                    progress.update(task, completed=daemon.stats.records)
                stats = daemon.stats
        daemon.close()
    summary = stats.summary()
    if json_mode:
        summary["alerts"] = alerts
        sink({**summary, "model": None, "at": None, "ts": None, "rules": rule_summary(decisions, policies)})
        return
    console.print(summary_table(summary, "replay"))
    rules = [(r["model"], r["rule"], r["would_do"]) for r in rule_summary(decisions, policies)]
    console.print(rule_table(decisions, rules))
    if alerts:
        console.print(alert_table(alerts))


def _count_lines(path: Path) -> int | None:
    if path.suffix.lower() not in (".jsonl", ".json", ".ndjson"):
        return None
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


# -- validate / schema -----------------------------------------------------------------------


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--events",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A recorded stream (JSONL, CSV or Parquet; repeatable): also show which of its models each policy "
    "watches, and the models none does.",
)
def validate(paths: tuple[Path, ...], events: tuple[Path, ...]) -> None:
    """Check policy files: exit 0 when all are valid, else exit 2 with one `file:line:col: message` per error
    (two policies selecting a model equally specifically included)."""
    from driftwarden.policies.fleet import conflicts
    from driftwarden.policies.loader import load_text

    bad = 0
    loaded = []
    for p in paths:
        policy, errors = load_text(Path(p))
        for err in errors:
            click.echo(str(err))
            bad += 1
        if policy is not None:
            loaded.append(policy)
    for err in conflicts(loaded):
        click.echo(str(err))
        bad += 1
    if bad:
        raise SystemExit(EXIT_INVALID)
    click.echo(f"{len(paths)} polic{'y' if len(paths) == 1 else 'ies'} valid", err=True)
    if events:
        _show_matches(loaded, events)


MATCHES_SHOWN = 20
"""Model names listed per policy by ``validate --events`` (the count is always complete)."""


def _show_matches(policies: list[Any], events: tuple[Path, ...]) -> None:
    """Route every model of the stream as the daemon would (its first event a policy admits)."""
    from driftwarden.daemon.io.batch_decoder import decode_batch
    from driftwarden.policies.fleet import Fleet

    fleet = Fleet(policies)
    watched: dict[str, list[str]] = {str(p.path): [] for p in policies}
    why: dict[str, str] = {}
    from driftwarden.daemon.config import Settings
    from driftwarden.daemon.wiring import open_source

    source = open_source(Settings(), events)
    index = 0
    while not source.exhausted:
        records = source.poll(10_000, 0.0)
        if not records:
            continue
        batch = decode_batch(records, first_index=index, arrival=0.0)
        index += len(records)
        for model, rows in batch.by_model.items():
            if model in why and not why[model]:
                continue
            for attributes in rows.attributes if fleet.uses_where else [None]:
                route = fleet.route(model, attributes)
                if route.policy is not None:
                    watched[str(route.policy.path)].append(model)
                    why[model] = ""
                    break
                why[model] = route.reason
    source.close()
    for path, models in watched.items():
        shown = ", ".join(sorted(models)[:MATCHES_SHOWN]) + (", ..." if len(models) > MATCHES_SHOWN else "")
        click.echo(f"{path}: {len(models)} model{'' if len(models) == 1 else 's'}{': ' if models else ''}{shown}")
    lost = sorted((m, r) for m, r in why.items() if r)
    if lost:
        click.echo(f"not watched: {len(lost)} model{'' if len(lost) == 1 else 's'}")
        for m, r in lost[:MATCHES_SHOWN]:
            click.echo(f"  {m}: {r}")


@main.command()
def schema() -> None:
    """Print the policy JSON Schema (for editor completion)."""
    from driftwarden.policies.schema import json_schema

    click.echo(orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2).decode())


# -- alerts ----------------------------------------------------------------------------------


@main.group()
def alerts() -> None:
    """Alerting: check that receivers and Alertmanager are reachable (see docs/alerting.md)."""


@alerts.command("test")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Daemon config with an 'alerting:' section.",
)
@click.option(
    "--receiver",
    "receiver_name",
    required=True,
    help="A receiver's name, or 'alertmanager' (every Alertmanager URL).",
)
def alerts_test(config_path: Path, receiver_name: str) -> None:
    """Send a test notification (alertname driftwarden-test, severity info) to one receiver now,
    bypassing the outbox; exit 1 when it did not go through."""
    import functools
    import time as _time

    from driftwarden.daemon.alerting import alertmanager, notifiers
    from driftwarden.daemon.alerting.alerts import fingerprint
    from driftwarden.daemon.alerting.config import load_alerting

    config, errors = load_alerting(config_path)
    if errors:
        for e in errors:
            click.echo(e, err=True)
        raise SystemExit(EXIT_INVALID)
    if config is None:
        raise click.UsageError(f"{config_path} has no 'alerting:' section")
    now = _time.time()
    labels = {"alertname": "driftwarden-test", "model": "driftwarden", "severity": "info"}
    alert = {
        "labels": labels,
        "annotations": {
            "summary": "a test notification from driftwarden",
            "description": f"sent by `driftwarden alerts test --receiver {receiver_name}`",
        },
        "startsAt": now,
        "endsAt": None,
        "status": "firing",
        "fingerprint": fingerprint(labels),
    }
    key = f"driftwarden-test/{int(now)}/firing"
    failures = 0
    targets: list[tuple[str, functools.partial[None]]]
    if receiver_name == "alertmanager":
        if config.alertmanager is None:
            raise click.UsageError("the alerting config has no 'alertmanager:'")
        body = alertmanager.postable(alert, wall=now, resend=config.seconds(config.alertmanager.resend))
        timeout = config.seconds(config.alertmanager.timeout)
        targets = [
            (url, functools.partial(alertmanager.post, url, [body], timeout)) for url in config.alertmanager.urls
        ]
    else:
        names = [r.name for r in config.receivers]
        if receiver_name not in names:
            raise click.UsageError(f"unknown receiver {receiver_name!r}; receivers: {', '.join(names) or '(none)'}")
        receiver = config.receiver(receiver_name)
        targets = [
            (f"{receiver_name} URL #{i}", functools.partial(notifiers.send, receiver, i, alert, key))
            for i in range(len(receiver.urls))
        ]
    for name, send in targets:
        try:
            send()
            click.echo(f"sent to {name}")
        except alertmanager.DeliveryError as e:
            failures += 1
            click.echo(f"FAILED {name}: {e}", err=True)
    if failures:
        raise SystemExit(1)


# -- state: status, history, models ----------------------------------------------------------


STATUS_TIMEOUT = 3.0
"""Seconds `driftwarden status` waits for a daemon to answer before reading the state folder instead."""


@main.command()
@click.option("--url", help="The daemon's HTTP address [default: <state-dir>/http.url, else the config's http.listen].")
@click.option(
    "--state-dir", type=click.Path(path_type=Path), help="State folder [default: the config's, or .driftwarden]."
)
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "json_mode", is_flag=True, help="One JSON object (with 'source': daemon or state folder).")
def status(url: str | None, state_dir: Path | None, config_path: Path | None, json_mode: bool) -> None:
    """Ask the running daemon over HTTP (/api/v1/status); when none answers, say so and read the state folder."""
    from driftwarden.daemon.config import Settings

    try:
        settings = Settings.load(config_path, state_dir=state_dir)
    except (ValueError, OSError) as e:
        raise click.UsageError(str(e)) from None
    url = url or _daemon_url(settings)
    answer, why = _ask_daemon(url) if url else (None, "no address known (--url, http.url, http.listen)")
    console = Console()
    if answer is not None and url is not None:
        if json_mode:
            click.echo(orjson.dumps({"source": "daemon", "url": url, **answer}).decode())
        else:
            console.print(status_table(answer, url))
        return
    info = _stored_status(settings.state_dir)
    note = f"no daemon answered ({why}); from the state folder {settings.state_dir}, as of its last checkpoint"
    if json_mode:
        click.echo(orjson.dumps({"source": "state", "note": note, **info}).decode())
        return
    click.echo(note, err=True)
    t = Table(title=f"state folder {settings.state_dir}", header_style="bold", show_header=False)
    t.add_column("what")
    t.add_column("value")
    t.add_row("next event index", str(info["next_index"]))
    t.add_row("positions", ", ".join(f"{k} {v}" for k, v in info["positions"].items()) or "-")
    t.add_row("actions", str(info["actions"]))
    t.add_row("unfinished", ", ".join(f"{a['key']} ({a['state']})" for a in info["unfinished_actions"]) or "-")
    console.print(t)


def _daemon_url(settings: Any) -> str | None:
    written = settings.state_dir / "http.url"
    if written.is_file():
        return written.read_text().strip() or None
    if settings.http.listen:
        from driftwarden.daemon.http.server import parse_listen

        host, port = parse_listen(settings.http.listen)
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # a wildcard address: ask this machine
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    return None


def _ask_daemon(url: str) -> tuple[dict[str, Any] | None, str]:
    import httpx

    try:
        r = httpx.get(url.rstrip("/") + "/api/v1/status", timeout=STATUS_TIMEOUT)
    except httpx.HTTPError as e:
        return None, f"{url}: {type(e).__name__}"
    if r.status_code != 200:
        return None, f"{url}: HTTP {r.status_code}"
    return r.json(), ""


def _stored_status(state_dir: Path) -> dict[str, Any]:
    from driftwarden.daemon.state.store import Store

    db = state_dir / "state.db"
    if not db.exists():
        raise click.UsageError(f"no daemon answered and there is no daemon state in {state_dir} (no {db})")
    store = Store(db)
    try:
        return {
            "positions": store.positions(),
            "next_index": store.next_index(),
            "unfinished_actions": [
                {"key": a.key, "state": a.state, "version": a.version} for a in store.unfinished_actions()
            ],
            "actions": len(store.actions()),
        }
    finally:
        store.close()


def status_table(s: dict[str, Any], url: str) -> Table:
    """The daemon's /api/v1/status for people: one row per model."""
    dead = sum(s["dead_letters"].values())
    t = Table(
        title=f"driftwarden {s['version']} at {url}: {'ready' if s['ready'] else 'NOT READY: ' + s['ready_reason']}",
        caption=f"up {s['uptime_seconds']:.0f} s · {s['records']} records · {s['events']} events · {dead} dead letters"
        f" · {s['running_actions']} actions running · lag {sum(s['lag'].values()) if s['lag'] else '-'}",
        header_style="bold",
    )
    for c in ("model", "policy", "champion", "events", "monitors", "rules"):
        t.add_column(c, overflow="fold")
    for m in s["models"]:
        t.add_row(
            m["name"],
            m["policy"],
            m["champion"] or "-",
            str(m["events"]),
            ", ".join(m["monitors"]),
            ", ".join(m["rules"]),
        )
    return t


# history, models list|show|promote|rollback: daemon/cli/registry.py
register_registry_commands(main)
main.add_command(state_commands)
