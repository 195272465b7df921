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
any process the trainer left behind is killed when it exits, so no training outlives its run.
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
#: The trainer's process id while it runs (its process group id too).
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
        }


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
) -> TrainResult:
    """Train on ``data`` (Parquet) into ``output`` with an entrypoint or a command.

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
        returncode, timed_out = _wait(proc, output, timeout)
    duration = time.monotonic() - started
    tail = _tail(output / LOG_FILE)
    error, temporary = _classify(returncode, timed_out, timeout, output, what, tail)

    if error is None and command is not None and not (output / TRAIN_INFO_FILE).exists():
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
    )


def _prepare_output(output: Path, params: dict[str, Any]) -> None:
    """An output folder without a previous run's results, holding this run's parameters."""
    output.mkdir(parents=True, exist_ok=True)
    for stale in (MODEL_FILE, TRAIN_INFO_FILE, ERROR_FILE):
        (output / stale).unlink(missing_ok=True)
    (output / PARAMS_FILE).write_text(json.dumps(params, indent=2, sort_keys=True))


def _trainer_argv(
    data: Path, output: Path, reference: Path | None, entrypoint: str | None, command: str | Sequence[str] | None
) -> tuple[str | list[str], str]:
    """What to run (a string: through the shell) and how the log names it."""
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
        return argv, f"entrypoint {entrypoint}"
    assert command is not None
    expanded = _expand(command, data=data, output=output, reference=reference)
    return expanded, f"command {expanded if isinstance(expanded, str) else shlex.join(expanded)}"


def _trainer_env(data: Path, output: Path, reference: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["DRIFTWARDEN_DATA"] = str(data)
    env["DRIFTWARDEN_OUTPUT"] = str(output)
    env["DRIFTWARDEN_REFERENCE"] = str(reference) if reference is not None else ""
    return env


def _wait(proc: subprocess.Popen[bytes], output: Path, timeout: float) -> tuple[int | None, bool]:
    """Wait for the trainer (killing its process group on timeout); (exit code, timed out).
    Whatever it started in its session is killed when it ends."""
    # For a restart after the caller was killed: the trainer runs in its own session and
    # would outlive it; reap_trainer() finds it through this file.
    (output / PID_FILE).write_text(str(proc.pid))
    timed_out = False
    try:
        returncode: int | None = proc.wait(timeout=timeout)
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
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    killed: int | None = None
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        environ = []  # gone, or not Linux: nothing we may safely kill
    if f"DRIFTWARDEN_OUTPUT={output}".encode() in environ:
        log.warning("killing trainer %d left running in %s by a previous run", pid, output)
        _signal_group(pid, signal.SIGKILL)
        killed = pid
    pid_file.unlink(missing_ok=True)
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
