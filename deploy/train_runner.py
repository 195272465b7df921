"""Subprocess entry for entrypoint trainers: ``python -m driftwarden.deploy.train_runner``.

Reads the Parquet data, splits features from the reserved columns, calls
``function(X, y, params)``, checks the result has ``predict``, pickles it atomically to
``<output>/model.pkl`` and writes ``<output>/train.json``. On failure it prints the traceback,
writes ``<output>/error.json`` ({"kind", "message"}) and exits:

- 2 — bad entrypoint (import error, missing attribute, not callable), unreadable data,
  a result without ``predict`` or that does not pickle (permanent);
- 1 — the trainer raised (permanent);
- 75 — the trainer raised ``MemoryError`` (temporary); ``sys.exit(n)`` inside the trainer
  passes through unchanged, so a trainer may ask for a retry with ``sys.exit(75)``.

The process ends with its status and no interpreter teardown (:func:`end`): pyarrow's threads,
started by the read of the data, may abort a process that exits soon after it ("terminate called
without an active exception", SIGABRT), which turned a trainer's exit 1 or 75 into a crash (seen
twice in fresh-clone test runs). The trainer's ``atexit`` handlers do not run.

Not a public API: :func:`driftwarden.deploy.training.run_training` builds the command line.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pickle
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from driftwarden.deploy.training import (
    ERROR_FILE,
    EX_TEMPFAIL,
    LABEL,
    MODEL_FILE,
    RESERVED_COLUMNS,
    TRAIN_INFO_FILE,
    fingerprint,
)

EXIT_TRAINER_RAISED = 1
EXIT_BAD_SETUP = 2


class _Failure(Exception):
    def __init__(self, kind: str, message: str, code: int) -> None:
        super().__init__(message)
        self.kind, self.message, self.code = kind, message, code


def _resolve(entrypoint: str) -> Any:
    module_name, _, attr = entrypoint.partition(":")
    if not module_name or not attr:
        raise _Failure("entrypoint", f"expected 'module:function', got {entrypoint!r}", 2)
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        traceback.print_exc()
        raise _Failure("import", f"cannot import {module_name!r}: {exc!r}", 2) from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise _Failure("entrypoint", f"{module_name!r} has no attribute {attr!r}", 2) from exc
    if not callable(obj):
        raise _Failure("entrypoint", f"{entrypoint!r} is not callable", 2)
    return obj


def _run(args: argparse.Namespace) -> None:
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    fn = _resolve(args.entrypoint)
    params = json.loads(Path(args.params_file).read_text()) if args.params_file else {}

    import pandas as pd

    try:
        df = pd.read_parquet(args.data)
    except Exception as exc:
        raise _Failure("data", f"cannot read {args.data}: {exc!r}", 2) from exc
    if LABEL not in df.columns:
        raise _Failure("data", f"training data has no {LABEL!r} column", 2)
    y = df[LABEL]
    X = df.drop(columns=[c for c in RESERVED_COLUMNS if c in df.columns])
    print(
        f"driftwarden: training {args.entrypoint} on {len(X)} rows x {X.shape[1]} features",
        flush=True,
    )

    started = time.monotonic()
    try:
        model = fn(X, y, params)
    except MemoryError as exc:
        traceback.print_exc()
        raise _Failure("memory", "trainer ran out of memory", EX_TEMPFAIL) from exc
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        traceback.print_exc()
        raise _Failure("exception", f"trainer raised {exc!r}", EXIT_TRAINER_RAISED) from exc
    duration = time.monotonic() - started

    if not callable(getattr(model, "predict", None)):
        raise _Failure(
            "model",
            f"trainer returned {type(model).__name__}, which has no predict()",
            EXIT_BAD_SETUP,
        )
    tmp = output / (MODEL_FILE + ".tmp")
    try:
        with open(tmp, "wb") as f:
            pickle.dump(model, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise _Failure("model", f"cannot pickle the model: {exc!r}", EXIT_BAD_SETUP) from exc
    info = {
        "duration": round(duration, 3),
        "rows": int(len(X)),
        "fingerprint": fingerprint(Path(args.data)),
        "features": [str(c) for c in X.columns],
        "entrypoint": args.entrypoint,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "python": sys.version.split()[0],
    }
    (output / TRAIN_INFO_FILE).write_text(json.dumps(info, indent=2))
    os.replace(tmp, output / MODEL_FILE)  # last: model.pkl exists only for a complete run
    print(f"driftwarden: trained in {duration:.2f} s, wrote {output / MODEL_FILE}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m driftwarden.deploy.train_runner")
    parser.add_argument("--entrypoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--params-file")
    args = parser.parse_args(argv)
    try:
        _run(args)
    except _Failure as failure:
        print(f"driftwarden: {failure.kind} error: {failure.message}", file=sys.stderr, flush=True)
        try:
            Path(args.output, ERROR_FILE).write_text(json.dumps({"kind": failure.kind, "message": failure.message}))
        except OSError:
            pass
        return failure.code
    return 0


def end(run: Any) -> None:
    """Call ``run`` (:func:`main`) and end the process with its status, or with the status of a
    ``sys.exit(n)`` inside the trainer, with the output flushed and without the interpreter's teardown
    (see the module docstring)."""
    try:
        code = run()
    except SystemExit as asked:
        if asked.code is None or isinstance(asked.code, int):
            code = asked.code or 0
        else:  # sys.exit("message"): the message on stderr and status 1, as Python does
            print(asked.code, file=sys.stderr)
            code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    end(main)
