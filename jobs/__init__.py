"""Background work: Celery tasks, the daily rebuild and offline experiments."""
