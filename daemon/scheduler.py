"""Time-based work on APScheduler: rules with ``schedule: <cron>`` tick the daemon at their times.

The scheduler thread only enqueues ticks; the daemon's loop makes the decisions, so rule state
is touched by one thread only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from driftwarden.policies.loader import LoadedPolicy

log = logging.getLogger("driftwarden.scheduler")


class RuleScheduler:
    """Starts a cron job per scheduled rule; each run calls ``tick(model, rule)`` (for a fleet
    policy, ``tick(<its file>, rule)``).

    >>> s = RuleScheduler([], tick=lambda model, rule: None)
    >>> s.start(); s.jobs; s.stop()
    []
    """

    def __init__(
        self, policies: Iterable[LoadedPolicy], tick: Callable[[str, str], None], timezone: str = "UTC"
    ) -> None:
        self._scheduler = BackgroundScheduler(timezone=timezone)
        self.jobs: list[str] = []
        for policy in policies:
            for rule in policy.spec.rules:
                if rule.schedule is None:
                    continue
                trigger = CronTrigger.from_crontab(rule.schedule, timezone=timezone)
                # A fleet policy ticks by its file: the daemon fans the tick out to every model it watches.
                target = policy.model or str(policy.path)
                job_id = f"{target}/{rule.name}"
                self._scheduler.add_job(
                    tick,
                    trigger,
                    args=(target, rule.name),
                    id=job_id,
                    coalesce=True,
                    max_instances=1,
                    misfire_grace_time=300,
                )
                self.jobs.append(job_id)

    def start(self) -> None:
        self._scheduler.start()
        for job in self._scheduler.get_jobs():
            log.info("scheduled rule %s: next run %s", job.id, job.next_run_time)

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
