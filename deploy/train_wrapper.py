"""Subprocess wrapper around every trainer: ``python -m driftwarden.deploy.train_wrapper``.

It runs the trainer as its child (in the wrapper's session, so a timeout's kill of the process
group reaches both), waits for it and writes how it ended to ``<output>/exit.json``
(``{"returncode", "ended"}``, atomically) before exiting with the trainer's status. The
daemon that launched it may be gone by then (SIGKILL, SIGTERM with a bounded stop): a
restarted daemon cannot ``wait()`` for a process that is not its child, so this file is how it
learns that the trainer finished and whether it succeeded
(:func:`driftwarden.deploy.training.resume_training`).

Only the standard library is imported: it starts in a few tens of milliseconds.

>>> import sys, tempfile
>>> from pathlib import Path
>>> out = Path(tempfile.mkdtemp())
>>> main([str(out), "--", sys.executable, "-c", "raise SystemExit(3)"])
3
>>> import json; json.loads((out / EXIT_FILE).read_text())["returncode"]
3
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: How the trainer ended, written by this wrapper when it ends.
EXIT_FILE = "exit.json"


def main(argv: list[str]) -> int:
    """``argv``: ``OUTPUT [--shell] -- COMMAND...``; returns the trainer's exit status (128 + n
    when it was killed by signal n, as a shell reports it)."""
    output, rest = Path(argv[0]), argv[1:]
    shell = rest[:1] == ["--shell"]
    rest = rest[1:] if shell else rest
    if rest[:1] != ["--"] or len(rest) < 2:
        print("usage: train_wrapper OUTPUT [--shell] -- COMMAND...", file=sys.stderr)
        return 2
    command: Any = rest[1] if shell else rest[1:]
    try:
        proc = subprocess.Popen(command, shell=shell)
    except OSError as exc:
        print(f"driftwarden: cannot start the trainer: {exc}", file=sys.stderr, flush=True)
        _write_exit(output, 127)
        return 127

    def forward(signum: int, _frame: Any) -> None:  # a SIGTERM for the wrapper alone reaches the trainer
        proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    returncode = proc.wait()
    _write_exit(output, returncode)
    return 128 - returncode if returncode < 0 else returncode


def _write_exit(output: Path, returncode: int) -> None:
    tmp = output / (EXIT_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"returncode": returncode, "ended": time.time()}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, output / EXIT_FILE)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
