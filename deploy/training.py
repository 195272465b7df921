"""Run a user's trainer in a subprocess and classify how it ended.

Two kinds of trainer, exactly one per call:

- an **entrypoint** ``"package.module:function"``, called by :mod:`driftwarden.deploy.train_runner` in a
  fresh ``sys.executable -m driftwarden.deploy.train_runner`` process as ``function(X, y, params)``; the
  runner pickles the returned model to ``<output>/model.pkl`` and writes ``<output>/train.json``;
- a **command**: a list of arguments run without a shell, or a string run with ``/bin/sh -c``
  (a string is the explicit opt-in to a shell). Placeholders ``{data}``, ``{output}`` and
  ``{reference}`` are replaced by the paths (shell-quoted inside a string). The command must
  leave ``<output>/model.pkl``; :func:`run_training` writes ``train.json`` for it.

Both kinds also see the paths as ``DRIFTWARDEN_DATA``, ``DRIFTWARDEN_OUTPUT`` and
``DRIFTWARDEN_REFERENCE`` in the environment (an entrypoint's only way to find the reference).

The trainer runs in its own session (process group); on timeout the whole group is killed, and
any process the trainer left behind is killed when it exits. A trainer outlives a caller that
dies (SIGKILL, or a bounded stop that leaves it running): it runs under
:mod:`driftwarden.deploy.train_wrapper`, which records its end in ``<output>/exit.json``, and
``<output>/train.pid`` describes it (pid, start time, timeout), so :func:`resume_training` in
a restarted caller adopts it — waits for it until its deadline, or judges how it ended.
stdout and stderr go to ``<output>/train.log``; :class:`TrainResult` carries a bounded tail.

How a run ends decides whether the lifecycle retries it (``temporary``):

============================================  ==========
timeout                                       temporary
killed by SIGKILL/SIGTERM (OOM killer, pod    temporary
eviction), or exit 137/143 from a shell
exit code 75 (``EX_TEMPFAIL``; an entrypoint  temporary
may ``sys.exit(75)``; ``MemoryError`` → 75)
missing data file, bad entrypoint, import     permanent
error, exception in the trainer, any other
exit code, no ``model.pkl``
============================================  ==========

Example (a command trainer that writes a pickled model)::

    >>> import pickle, sys, tempfile
    >>> from pathlib import Path
    >>> tmp = Path(tempfile.mkdtemp())
    >>> (tmp / "data.parquet").write_bytes(b"not really parquet")
    18
    >>> code = "import pickle,sys; pickle.dump(42, open(sys.argv[1] + '/model.pkl', 'wb'))"
    >>> result = run_training(tmp / "data.parquet", tmp / "out",
    ...                       command=[sys.executable, "-c", code, "{output}"], timeout=30)
    >>> result.ok, result.returncode, result.temporary
    (True, 0, False)
    >>> pickle.loads((tmp / "out" / "model.pkl").read_bytes())
    42
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from driftwarden.deploy.train_wrapper import EXIT_FILE

log = logging.getLogger(__name__)

#: Reserved columns of the exported training data; every other column is a feature.
LABEL = "__label"
ID = "__id"
TS = "__ts"
INDEX = "__index"
RESERVED_COLUMNS = (LABEL, ID, TS, INDEX)

MODEL_FILE = "model.pkl"
TRAIN_INFO_FILE = "train.json"
LOG_FILE = "train.log"
PARAMS_FILE = "params.json"
#: Written by the runner when it fails on its own terms (bad entrypoint, trainer raised…).
ERROR_FILE = "error.json"
#: The trainer while it runs (:class:`Trainer` as JSON: pid, which is its process group id too, and start time).
PID_FILE = "train.pid"

#: sysexits.h EX_TEMPFAIL: "try again later" — the trainer asks to be retried.
EX_TEMPFAIL = 75
#: Signals that say "the machine took the process away", not "the trainer is broken".
TEMPORARY_SIGNALS = frozenset({signal.SIGKILL, signal.SIGTERM})
#: Enough of the log to show a traceback, small enough to persist in an action's state.
LOG_TAIL_BYTES = 8192
#: After SIGTERM on timeout, how long the group gets to exit before SIGKILL.
KILL_GRACE_SECONDS = 2.0
#: Chunk size for hashing data files: bounded memory for any file size.
_HASH_CHUNK = 1 << 20
#: How often a restarted caller looks whether an adopted trainer (not its child) has ended.
ADOPT_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class TrainResult:
    """How one training run ended.

    ``temporary`` tells a caller whether trying again may help (see the module table).
    ``log`` is the tail (at most :data:`LOG_TAIL_BYTES`) of the run's stdout and stderr.
    """

    ok: bool
    output: Path
    returncode: int | None
    duration: float
    log: str
    error: str | None
    temporary: bool
    adopted: bool = False
    """The trainer was launched by a caller that died; this run found it again (:func:`resume_training`)."""

    @property
    def model_path(self) -> Path:
        return self.output / MODEL_FILE

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form, for an action's persisted state."""
        return {
            "ok": self.ok,
            "output": str(self.output),
            "returncode": self.returncode,
            "duration": round(self.duration, 3),
            "error": self.error,
            "temporary": self.temporary,
            "adopted": self.adopted,
        }


@dataclass(frozen=True)
class Trainer:
    """A launched trainer, as a restarted caller finds it again: its pid (= its process group,
    it leads its own session), the kernel's start time of that pid (``/proc/<pid>/stat``, so a
    recycled pid is never taken for it), when it started (wall clock) and its timeout.

    >>> t = Trainer(pid=os.getpid(), ticks=start_ticks(os.getpid()), started=time.time(), timeout=60.0)
    >>> t.alive(), Trainer.from_json(t.to_json()) == t
    (True, True)
    >>> Trainer(pid=os.getpid(), ticks=-1, started=0.0, timeout=1.0).alive()  # another process with that pid
    False
    """

    pid: int
    ticks: int | None
    started: float
    timeout: float

    @property
    def deadline(self) -> float:
        """Wall-clock time after which it is killed as timed out."""
        return self.started + self.timeout

    def alive(self) -> bool:
        """The process still runs and is this trainer (a zombie has ended)."""
        stat = _stat(self.pid)
        if stat is None or stat[0] in ("Z", "X"):
            return False
        return self.ticks is None or stat[19] == str(self.ticks)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Trainer:
        return cls(int(data["pid"]), data.get("ticks"), float(data["started"]), float(data["timeout"]))


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux); None when unknown."""
    stat = _stat(pid)
    return int(stat[19]) if stat is not None else None


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def fingerprint(path: Path) -> str:
    """The sha256 hex digest of a file's bytes (the data version in a model's lineage).

    >>> import tempfile
    >>> from pathlib import Path
    >>> p = Path(tempfile.mkdtemp()) / "d"
    >>> _ = p.write_bytes(b"abc")
    >>> fingerprint(p)[:16]
    'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def run_training(
    data: Path,
    output: Path,
    *,
    entrypoint: str | None = None,
    command: str | Sequence[str] | None = None,
    params: Mapping[str, Any] | None = None,
    timeout: float,
    reference: Path | None = None,
    cwd: Path | None = None,
    on_start: Callable[[Trainer], None] | None = None,
) -> TrainResult:
    """Train on ``data`` (Parquet) into ``output`` with an entrypoint or a command.

    The trainer runs under :mod:`driftwarden.deploy.train_wrapper`, which records its end in
    ``<output>/exit.json``, and is described in ``<output>/train.pid`` while it runs;
    ``on_start`` gets that :class:`Trainer` once it was launched (a caller persists it): a
    restarted caller finds the trainer again with :func:`resume_training`.

    Never raises for a failing trainer: the failure is in the result. Raises ``ValueError``
    only for a wrong call (both or neither of ``entrypoint``/``command``, a bad timeout,
    a ``{reference}`` placeholder without a reference). ``params`` must be JSON-serializable;
    they are saved as ``<output>/params.json``. A stale ``model.pkl`` in ``output`` is removed
    first, so success always means this run wrote it.
    """
    if (entrypoint is None) == (command is None):
        raise ValueError("run_training: give exactly one of entrypoint= or command=")
    if not timeout > 0:
        raise ValueError(f"run_training: timeout must be > 0 seconds, got {timeout!r}")
    data, output = Path(data).absolute(), Path(output).absolute()
    reference = Path(reference).absolute() if reference is not None else None
    if output.is_dir():  # a caller that died may have launched a trainer here before it could say so
        for pid in kill_strays(output):
            log.warning("killed trainer %d, left in %s by a previous run without a record", pid, output)
    _prepare_output(output, dict(params or {}))
    if not data.is_file():
        return _failed(output, f"training data not found: {data}", temporary=False)
    if entrypoint is not None and ":" not in entrypoint:
        return _failed(output, f"entrypoint must be 'module:function', got {entrypoint!r}", False)
    argv, what = _trainer_argv(data, output, reference, entrypoint, command)

    log.info("training %s on %s (timeout %.0f s)", what, data.name, timeout)
    started = time.monotonic()
    with open(output / LOG_FILE, "wb") as logf:
        try:
            proc = subprocess.Popen(
                argv,
                shell=isinstance(argv, str),
                cwd=cwd,
                env=_trainer_env(data, output, reference),
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            return _failed(output, f"cannot start {what}: {exc}", temporary=False)
        trainer = Trainer(proc.pid, start_ticks(proc.pid), time.time(), float(timeout))
        returncode, timed_out = _wait(proc, output, trainer, on_start)
    duration = time.monotonic() - started
    return _result(data, output, command is not None, what, returncode, timed_out, timeout, duration)


def resume_training(data: Path, output: Path, *, command: bool) -> TrainResult | None:
    """The result of the trainer a caller that died launched into ``output``, or ``None`` when
    there is none to adopt (never launched, or it vanished without recording its end — killed
    with its whole group, say): then train again.

    A trainer still running is waited for until its deadline (its start time + timeout), then
    its process group is killed (a temporary failure, as a timeout of :func:`run_training`).
    One that ended is judged by its ``exit.json`` exactly as :func:`run_training` judges it.
    """
    data, output = Path(data).absolute(), Path(output).absolute()
    trainer = _recorded_trainer(output)
    timed_out = False
    if trainer is not None and trainer.alive():
        log.warning("adopting trainer %d in %s, left running by a previous run", trainer.pid, output)
        while trainer.alive() and time.time() < trainer.deadline:
            time.sleep(ADOPT_POLL_SECONDS)
        if trainer.alive():
            timed_out = True
            _kill_adopted(trainer)
    ended = _exit_record(output)
    if trainer is not None:
        _signal_group(trainer.pid, signal.SIGKILL)  # whatever it left in its session dies with the run
        (output / PID_FILE).unlink(missing_ok=True)
    if ended is None and not timed_out:
        return None
    returncode = None if ended is None else int(ended["returncode"])
    duration = (float(ended["ended"]) if ended else time.time()) - (trainer.started if trainer else time.time())
    timeout = trainer.timeout if trainer is not None else 0.0
    what = f"adopted trainer {trainer.pid if trainer else '?'}"
    result = _result(data, output, command, what, returncode, timed_out, timeout, max(duration, 0.0), adopted=True)
    log.warning("adopted the training in %s: %s", output, "finished" if result.ok else result.error)
    return result


def _result(
    data: Path,
    output: Path,
    command: bool,
    what: str,
    returncode: int | None,
    timed_out: bool,
    timeout: float,
    duration: float,
    **extra: Any,
) -> TrainResult:
    """How a run ended: the trainer's own status from ``exit.json`` when its wrapper wrote it
    (else the wrapper's), classified as the module's table says."""
    ended = _exit_record(output)
    if ended is not None:
        returncode = int(ended["returncode"])
    tail = _tail(output / LOG_FILE)
    error, temporary = _classify(returncode, timed_out, timeout, output, what, tail)
    if error is None and command and not (output / TRAIN_INFO_FILE).exists():
        _write_command_info(data, output, duration)
    if error is None:
        log.info("training finished in %.1f s", duration)
    else:
        log.warning(
            "training failed after %.1f s (%s): %s",
            duration,
            "temporary" if temporary else "permanent",
            error,
        )
    return TrainResult(
        ok=error is None,
        output=output,
        returncode=returncode,
        duration=duration,
        log=tail,
        error=error,
        temporary=temporary,
        **extra,
    )


def _prepare_output(output: Path, params: dict[str, Any]) -> None:
    """An output folder without a previous run's results, holding this run's parameters."""
    output.mkdir(parents=True, exist_ok=True)
    for stale in (MODEL_FILE, TRAIN_INFO_FILE, ERROR_FILE, EXIT_FILE):
        (output / stale).unlink(missing_ok=True)
    (output / PARAMS_FILE).write_text(json.dumps(params, indent=2, sort_keys=True))


def _trainer_argv(
    data: Path, output: Path, reference: Path | None, entrypoint: str | None, command: str | Sequence[str] | None
) -> tuple[list[str], str]:
    """What to run (the trainer under :mod:`~driftwarden.deploy.train_wrapper`; a string command
    through the shell) and how the log names it."""
    wrapper = [sys.executable, "-m", "driftwarden.deploy.train_wrapper", str(output)]
    if entrypoint is not None:
        argv = [
            sys.executable,
            "-m",
            "driftwarden.deploy.train_runner",
            "--entrypoint",
            entrypoint,
            "--data",
            str(data),
            "--output",
            str(output),
            "--params-file",
            str(output / PARAMS_FILE),
        ]
        return [*wrapper, "--", *argv], f"entrypoint {entrypoint}"
    assert command is not None
    expanded = _expand(command, data=data, output=output, reference=reference)
    if isinstance(expanded, str):
        return [*wrapper, "--shell", "--", expanded], f"command {expanded}"
    return [*wrapper, "--", *expanded], f"command {shlex.join(expanded)}"


def _trainer_env(data: Path, output: Path, reference: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["DRIFTWARDEN_DATA"] = str(data)
    env["DRIFTWARDEN_OUTPUT"] = str(output)
    env["DRIFTWARDEN_REFERENCE"] = str(reference) if reference is not None else ""
    return env


def _wait(
    proc: subprocess.Popen[bytes], output: Path, trainer: Trainer, on_start: Callable[[Trainer], None] | None
) -> tuple[int | None, bool]:
    """Wait for the trainer (killing its process group on timeout); (exit code, timed out).
    Whatever it started in its session is killed when it ends."""
    # For a restart after the caller was killed: the trainer runs in its own session and
    # outlives it; resume_training() and reap_trainer() find it through this file.
    (output / PID_FILE).write_text(json.dumps(trainer.to_json()))
    timed_out = False
    try:
        if on_start is not None:
            on_start(trainer)
        returncode: int | None = proc.wait(timeout=trainer.timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        returncode = proc.returncode
    finally:
        # Whatever the trainer started in its session dies with the run.
        _signal_group(proc.pid, signal.SIGKILL)
        if proc.returncode is None:  # an exception (e.g. KeyboardInterrupt) in wait()
            proc.kill()
            proc.wait()
        (output / PID_FILE).unlink(missing_ok=True)
    return returncode, timed_out


def _recorded_trainer(output: Path) -> Trainer | None:
    """The trainer ``train.pid`` describes (an older daemon wrote a bare pid)."""
    try:
        text = (output / PID_FILE).read_text().strip()
    except OSError:
        return None
    try:
        data = json.loads(text)
        return Trainer.from_json(data) if isinstance(data, dict) else Trainer(int(data), None, 0.0, 0.0)
    except (ValueError, KeyError, TypeError):
        return None


def _exit_record(output: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((output / EXIT_FILE).read_text())
        return data if isinstance(data, dict) and isinstance(data.get("returncode"), int) else None
    except (OSError, ValueError):
        return None


def _kill_adopted(trainer: Trainer) -> None:
    """SIGTERM an adopted trainer's group, SIGKILL it after a grace period (it is not our child:
    we cannot wait for it, only watch)."""
    _signal_group(trainer.pid, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE_SECONDS
    while trainer.alive() and time.monotonic() < deadline:
        time.sleep(ADOPT_POLL_SECONDS / 4)
    _signal_group(trainer.pid, signal.SIGKILL)


def _classify(
    returncode: int | None, timed_out: bool, timeout: float, output: Path, what: str, tail: str
) -> tuple[str | None, bool]:
    """(error, temporary) of a finished run, as the module's table says; no error: success."""
    if timed_out:
        return f"timed out after {timeout:g} s; killed its process group", True
    if returncode == 0:
        return (None if (output / MODEL_FILE).is_file() else f"{what} exited 0 but wrote no {MODEL_FILE}"), False
    if returncode == EX_TEMPFAIL:
        return f"exit code {EX_TEMPFAIL} (EX_TEMPFAIL): trainer asked to retry", True
    if returncode is not None and returncode < 0:
        sig = signal.Signals(-returncode)
        error = f"killed by {sig.name}" + (" (out of memory?)" if sig == signal.SIGKILL else "")
        return error, sig in TEMPORARY_SIGNALS
    if returncode is not None and returncode - 128 in {int(s) for s in TEMPORARY_SIGNALS}:
        # a shell reports its killed child as 128 + signal number
        return f"exit code {returncode}: child killed by {signal.Signals(returncode - 128).name}", True
    return f"exit code {returncode}: {_runner_error(output) or _last_line(tail)}", False


def reap_trainer(output: Path) -> int | None:
    """Kill a trainer left running in ``output`` by a caller that died (SIGKILL, power loss).

    The trainer runs in its own session, so it survives its caller; :func:`run_training`
    leaves its pid in ``<output>/train.pid`` while it runs. The process group is killed only
    when the pid still belongs to a trainer of this ``output`` (its environment says so; a
    recycled pid is left alone). Returns the killed pid, or ``None``.
    """
    output = Path(output).absolute()
    pid_file = output / PID_FILE
    trainer = _recorded_trainer(output)
    if trainer is None:
        return None
    pid = trainer.pid
    killed: int | None = None
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        environ = []  # gone, or not Linux: nothing we may safely kill
    if f"DRIFTWARDEN_OUTPUT={output}".encode() in environ and (trainer.ticks is None or trainer.alive()):
        log.warning("killing trainer %d left running in %s by a previous run", pid, output)
        _signal_group(pid, signal.SIGKILL)
        killed = pid
    pid_file.unlink(missing_ok=True)
    return killed


def kill_strays(output: Path) -> list[int]:
    """Kill the process groups of every process that is a trainer of ``output`` (its environment
    names it: the wrapper and all it started inherit ``DRIFTWARDEN_OUTPUT``); return their pids.
    Linux only (``/proc``); elsewhere nothing is found."""
    marker = f"DRIFTWARDEN_OUTPUT={Path(output).absolute()}".encode()
    killed = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            pid = int(entry.name)
            os.killpg(os.getpgid(pid), signal.SIGKILL)
            killed.append(pid)
        except (OSError, ValueError):
            continue  # gone meanwhile, or not ours to read
    return killed


def _expand(command: str | Sequence[str], *, data: Path, output: Path, reference: Path | None) -> str | list[str]:
    """Substitute the placeholders; quote them for the shell when ``command`` is a string."""
    shell = isinstance(command, str)
    text = command if isinstance(command, str) else " ".join(command)
    if "{reference}" in text and reference is None:
        raise ValueError("command uses {reference} but no reference path was given")
    values = {"{data}": str(data), "{output}": str(output), "{reference}": str(reference or "")}

    def sub(arg: str) -> str:
        for key, value in values.items():
            arg = arg.replace(key, shlex.quote(value) if shell else value)
        return arg

    if isinstance(command, str):
        return sub(command)
    if not command:
        raise ValueError("command must not be empty")
    return [sub(str(a)) for a in command]


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the trainer's process group, SIGKILL it after a grace period."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()


def _tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            raw = f.read()
    except OSError:
        return ""
    text = raw.decode("utf-8", errors="replace")
    return ("…" + text) if size > limit else text


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def _runner_error(output: Path) -> str | None:
    try:
        info = json.loads((output / ERROR_FILE).read_text())
        return f"{info['kind']}: {info['message']}"
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _failed(output: Path, error: str, temporary: bool) -> TrainResult:
    log.warning("training not started (%s): %s", "temporary" if temporary else "permanent", error)
    return TrainResult(False, output, None, 0.0, "", error, temporary)


def _write_command_info(data: Path, output: Path, duration: float) -> None:
    info: dict[str, Any] = {"duration": round(duration, 3), "fingerprint": fingerprint(data)}
    try:
        import pyarrow.parquet as pq

        info["rows"] = pq.read_metadata(data).num_rows
    except Exception:  # noqa: BLE001 - a command may train on any format; rows is optional
        info["rows"] = None
    (output / TRAIN_INFO_FILE).write_text(json.dumps(info, indent=2))
