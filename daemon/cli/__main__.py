"""``python -m driftwarden.daemon.cli``: the ``driftwarden`` command."""

from __future__ import annotations

from driftwarden.daemon.cli.commands import main

main()
