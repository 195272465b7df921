"""A broker outage, waited out: what failed, since when, how long to wait before the next try.

A Kafka broker that is gone (killed, restarting, partitioned away) or a request that timed out is
not the daemon's failure: :class:`Outage` turns the client's retriable errors into a state the
loop can wait on. The source backs off (doubling from :data:`FIRST_WAIT_S` to :data:`LONGEST_WAIT_S`),
logs when the outage starts, every :data:`LOG_EVERY_S` while it lasts and when it ends, and
``/readyz`` reports it (503 with :attr:`Outage.reason`). Nothing is lost meanwhile: the daemon's
checkpoint holds its positions, and the records not yet read stay in the topic.

>>> import kafka.errors as errors
>>> now = [0.0]
>>> outage = Outage("127.0.0.1:9092", clock=lambda: now[0])
>>> transient(errors.KafkaConnectionError("111 ECONNREFUSED")), transient(ValueError("a bug"))
(True, False)
>>> outage.failed(errors.KafkaConnectionError("111 ECONNREFUSED")), outage.failed(errors.KafkaTimeoutError())
(0.25, 0.5)
>>> now[0] = 12.0; outage.reason
'Kafka broker 127.0.0.1:9092 unreachable for 12 s (KafkaTimeoutError)'
>>> outage.ok(); outage.reason is None, outage.outages
(True, 1)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kafka import errors as kafka_errors

log = logging.getLogger("driftwarden.kafka")

FIRST_WAIT_S = 0.25
"""The first pause after a failed request: a leader move or a coordinator change is over this soon."""

LONGEST_WAIT_S = 2.0
"""The longest pause between two tries: a restarted broker is used within 2 s, and a stop (SIGTERM)
is never held back longer."""

LOG_EVERY_S = 30.0
"""While an outage lasts, a line this often (not one per failed request)."""


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` is an outage to wait out (kafka-python's retriable errors, a refused or reset
    connection, a timeout) rather than a fault of ours or of the configuration."""
    if isinstance(exc, kafka_errors.KafkaError):
        return bool(getattr(exc, "retriable", False)) or isinstance(exc, kafka_errors.NoBrokersAvailable)
    return isinstance(exc, ConnectionError | TimeoutError)


class Outage:
    """The state of the connection to ``bootstrap``; see the module docstring. Not thread-safe:
    the loop's thread alone calls it (the HTTP face reads :attr:`reason`, a plain attribute read)."""

    def __init__(self, bootstrap: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.bootstrap, self.clock = bootstrap, clock
        self.since: float | None = None
        """When the current outage began (``clock`` seconds), or None."""
        self.error = ""
        """The latest failure of the current outage."""
        self.outages = 0
        """Outages so far (ended or not)."""
        self._wait = 0.0
        self._logged = 0.0

    @property
    def reason(self) -> str | None:
        """What ``/readyz`` says while the broker is gone; None when it answers."""
        if self.since is None:
            return None
        return f"Kafka broker {self.bootstrap} unreachable for {self.clock() - self.since:.0f} s ({self.error})"

    def failed(self, exc: BaseException) -> float:
        """A request failed with a transient error: note it, log when due; the seconds to wait."""
        now = self.clock()
        self.error = type(exc).__name__
        if self.since is None:
            self.since, self._logged, self._wait = now, now, FIRST_WAIT_S
            self.outages += 1
            log.warning(
                "Kafka broker %s unreachable (%s: %s): waiting it out, retrying every %g-%g s; nothing is lost, "
                "reading resumes at the checkpointed positions",
                self.bootstrap,
                self.error,
                exc,
                FIRST_WAIT_S,
                LONGEST_WAIT_S,
            )
            return self._wait
        self._wait = min(LONGEST_WAIT_S, self._wait * 2)
        if now - self._logged >= LOG_EVERY_S:
            self._logged = now
            log.warning("Kafka broker %s still unreachable after %.0f s (%s)", self.bootstrap, now - self.since, exc)
        return self._wait

    def ok(self) -> None:
        """A request succeeded: the outage, if any, is over."""
        if self.since is not None:
            log.warning("Kafka broker %s answers again after %.1f s", self.bootstrap, self.clock() - self.since)
            self.since = None


class Waiter:
    """How an output waits a broker outage out (:meth:`KafkaSink.flush
    <driftwarden.daemon.io.kafka.sink.KafkaSink.flush>`): it reports to ``outage`` (the source's, when both use
    one broker, so that ``/readyz`` says it), pauses for the outage's backoff between tries, runs ``between``
    meanwhile (the daemon republishes its snapshot, so ``/livez`` sees a loop that turns) and gives up once
    ``stopping`` is set: a stop never waits for a broker.

    >>> import kafka.errors as errors
    >>> stop = threading.Event()
    >>> waiter = Waiter(Outage("127.0.0.1:9092"), stop)
    >>> waiter.pause(errors.KafkaTimeoutError()), waiter.outage.since is not None
    (True, True)
    >>> stop.set(); waiter.pause(errors.KafkaTimeoutError())
    False
    """

    def __init__(self, outage: Outage, stopping: threading.Event, between: Callable[[], None] | None = None) -> None:
        self.outage, self.stopping, self.between = outage, stopping, between

    def pause(self, exc: BaseException) -> bool:
        """A try failed with ``exc`` (transient): wait the backoff out; False when a stop was asked for."""
        if self.stopping.is_set():
            return False
        wait = self.outage.failed(exc)
        if self.between is not None:
            self.between()
        return not self.stopping.wait(wait)

    def ok(self) -> None:
        """The outputs were acknowledged: the outage, if any, is over."""
        self.outage.ok()
