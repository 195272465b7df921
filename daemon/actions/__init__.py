"""Carrying out decisions: the action runner and its parts.

- :mod:`~driftwarden.daemon.actions.runner`: :class:`ActionRunner`, which runs each action's
  phases in worker threads and records every state;
- :mod:`~driftwarden.daemon.actions.plans`: a policy's action translated into the deploy
  lifecycle's objects (trainer, gate, target, conditions, windows);
- :mod:`~driftwarden.daemon.actions.windows`: the actions waiting for live labeled traffic;
- :mod:`~driftwarden.daemon.actions.recovery`: what a restart does with an unfinished action.
"""

from __future__ import annotations

from driftwarden.daemon.actions.runner import ActionRunner

__all__ = ["ActionRunner"]
