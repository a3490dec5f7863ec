"""The job queue shared by the backend and the worker: a redis list."""

import os

import redis

JOB_QUEUE = "i2m:jobs"


def connect() -> redis.Redis:
    return redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://redis:6379/0"), socket_timeout=5)
