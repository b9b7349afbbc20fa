"""The daily rebuild's schedule, from ``NITERU_REBUILD_CRON`` (empty: no schedule), for beat and for the
inline executor alike.

Beat sends the rebuild task (``jobs.registry.REBUILD``) with an expiry (``NITERU_REBUILD_EXPIRES``): a
run that no worker picked up in time (workers down, a long backlog) is dropped instead of running late,
and several missed runs never pile up into rebuilds back to back. The rebuild lock stops a second one
from starting anyway.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.schedules import crontab

from jobs.registry import REBUILD
from niteru.settings import Settings

REBUILD_ENTRY = "niteru-daily-rebuild"


class ScheduleError(ValueError):
    pass


def rebuild_crontab(settings: Settings) -> crontab | None:
    """``None`` when the schedule is switched off."""
    expr = settings.rebuild_cron.strip()
    if not expr:
        return None
    parts = expr.split()
    if len(parts) != 5:
        raise ScheduleError(f"NITERU_REBUILD_CRON {expr!r}: want 5 fields, 'minute hour day month weekday'")
    # The crontab reads "now" and its time zone from an app; a bare one (no broker is touched) in the
    # settings' zone serves beat and the inline executor alike.
    clock = Celery("niteru-schedule", set_as_current=False)
    clock.conf.timezone = settings.rebuild_timezone
    minute, hour, day, month, weekday = parts
    try:
        return crontab(
            minute=minute,
            hour=hour,
            day_of_month=day,
            month_of_year=month,
            day_of_week=weekday,
            app=clock,
        )
    except ValueError as exc:
        raise ScheduleError(f"NITERU_REBUILD_CRON {expr!r}: {exc}") from None


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    cron = rebuild_crontab(settings)
    if cron is None:
        return {}
    return {
        REBUILD_ENTRY: {
            "task": REBUILD,
            "schedule": cron,
            "options": {"expires": settings.rebuild_expires, "queue": settings.celery_queue},
        }
    }
