"""The Celery application, configured from settings (``NITERU_CELERY_*``, ``NITERU_JOBS_*``).

Run a worker with ``celery -A jobs.celery_app worker --pool solo`` (the embedded store admits one
process, so one solo worker per data folder, and then not beside a running API, which would own the
store: with the embedded store the API runs tasks itself, ``jobs.inline``; with a Qdrant server,
``--concurrency N`` and more hosts),
and one ``celery -A jobs.celery_app beat`` for the daily rebuild (``NITERU_REBUILD_CRON``).
Building the app opens no connection: Celery connects when a worker starts or a task is sent.
"""

from __future__ import annotations

from celery import Celery

from jobs.schedule import beat_schedule
from jobs.signals import install_signals
from niteru.settings import Settings, get_settings


def create_celery(settings: Settings | None = None) -> Celery:
    s = settings or get_settings()
    celery = Celery("niteru", broker=s.celery_broker_url, backend=s.celery_result_backend, include=["jobs.tasks"])
    celery.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=s.celery_queue,
        # Acknowledge after the task ran, and give a task back to the queue when its worker dies (SIGKILL,
        # OOM): a killed worker loses nothing. Tasks are idempotent, so running one twice is harmless.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One task at a time per worker process: late acks with a large prefetch would hold many
        # unacknowledged tasks hostage to one slow image.
        worker_prefetch_multiplier=1,
        result_expires=s.jobs_result_expires,
        broker_connection_retry_on_startup=True,
        # Longer than the longest task (settings check it against the rebuild's lock), or a slow task would
        # be handed to a second worker while it runs. Sweep for abandoned tasks at every check (every 10 s,
        # a cheap sorted-set range), not every tenth: a dead worker's task comes back soon after the timeout.
        broker_transport_options={"visibility_timeout": s.visibility_timeout, "unacked_restore_throttle": 1},
        result_backend_transport_options={"visibility_timeout": s.visibility_timeout},
        task_track_started=True,
        # The daily rebuild (``celery -A jobs.celery_app beat``); its cron is read in the settings' time zone.
        beat_schedule=beat_schedule(s),
        timezone=s.rebuild_timezone,
        # The product tasks' retry limits (``jobs.tasks`` reads them from here, not from the settings).
        niteru_retry_backoff_max=s.jobs_retry_backoff_max,
        niteru_max_retries=s.jobs_max_retries,
        # The worker's own bookkeeping (``jobs.deliveries``) reads its limits and Redis from these settings.
        niteru_settings=s,
    )
    install_signals(celery, s)  # request ids into task headers, task metrics, JSON worker logs
    return celery


# ``celery -A jobs.celery_app`` finds this; it reads settings but connects to nothing.
app = create_celery()
