"""Events for models that have no policy: counted per name up to a bound, logged once per name up to it.

>>> u = Unrouted(max_names=2)
>>> [u.add(name, 3) for name in ("a", "b", "a", "c", "d")]
[True, True, False, False, False]
>>> u.counts, u.other, u.total
({'a': 6, 'b': 3}, 6, 15)
"""

from __future__ import annotations

import logging

log = logging.getLogger("driftwarden.daemon")


class Unrouted:
    """Per-name counts of events nobody watches; memory and log lines stay bounded by ``max_names``."""

    def __init__(self, max_names: int) -> None:
        self.max_names = max_names
        self.counts: dict[str, int] = {}
        self.other = 0
        """Events of names past the bound."""

    @property
    def total(self) -> int:
        return sum(self.counts.values()) + self.other

    def add(self, model: str, events: int) -> bool:
        """Count ``events`` of ``model``; True when this is the first time the name is seen (and logged)."""
        if model in self.counts:
            self.counts[model] += events
            return False
        if len(self.counts) < self.max_names:
            self.counts[model] = events
            log.warning("events for model %r have no policy; they are counted and ignored", model[:200])
            return True
        if not self.other:
            log.warning(
                "more than %d model names without a policy: further ones are counted together, not logged",
                self.max_names,
            )
        self.other += events
        return False
