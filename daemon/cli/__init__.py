"""The ``driftwarden`` command line (click): ``python -m driftwarden.daemon.cli`` is the same command.

>>> from click.testing import CliRunner
>>> CliRunner().invoke(main, ["--version"], prog_name="driftwarden").output.startswith("driftwarden, version")
True
"""

from __future__ import annotations

from driftwarden.daemon.cli.commands import EXIT_INVALID, main

__all__ = ["EXIT_INVALID", "main"]
