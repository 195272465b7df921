"""``/livez`` and ``/readyz`` as Kubernetes reads them, decided from the latest snapshot alone.

- live: the loop turns — it published within :data:`LIVE_SECONDS` (it publishes after every batch
  and after every empty poll), and it has not stopped. A failing liveness probe restarts the pod.
- ready: the state is loaded (a first snapshot exists), the source is reachable and ingestion is
  not paused by backpressure.

>>> live(None, now=0.0), ready(None)
((False, 'the loop has not started'), (False, 'state not loaded yet'))
"""

from __future__ import annotations

from driftwarden.daemon.http.snapshot import Snapshot

LIVE_SECONDS = 60.0
"""A loop that published nothing for this long is stuck: ten times the slowest checkpoint seen under load."""


def live(snap: Snapshot | None, now: float) -> tuple[bool, str]:
    """(alive, why)."""
    if snap is None:
        return False, "the loop has not started"
    if snap.stopped:
        return False, "the loop stopped"
    idle = now - snap.published_at
    if idle > LIVE_SECONDS:
        return False, f"the loop made no progress for {idle:.0f} s (bound {LIVE_SECONDS:.0f} s)"
    return True, "the loop turns"


def ready(snap: Snapshot | None) -> tuple[bool, str]:
    """(ready, why)."""
    if snap is None:
        return False, "state not loaded yet"
    if snap.stopped:
        return False, "the loop stopped"
    if not snap.source_reachable:
        return False, "the source is unreachable" + (f": {snap.source_problem}" if snap.source_problem else "")
    if snap.paused is not None:
        return False, f"ingestion paused: {snap.paused}"
    return True, "ready"
