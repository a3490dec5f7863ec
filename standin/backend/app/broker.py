"""The broker shared by the backend, the workers and flower: redis, as celery uses it."""

import os

import redis

JOB_QUEUE = "i2m:jobs"
HEARTBEAT_PREFIX = "i2m:worker:"


def connect(variable: str = "CELERY_BROKER_URL") -> redis.Redis:
    """A client for the URL in `variable`. Like the production settings, an empty URL falls back
    to the default, so a container started without the env file runs and fails per request."""
    return redis.Redis.from_url(os.environ.get(variable) or "redis://redis:6379/0", socket_timeout=5)
