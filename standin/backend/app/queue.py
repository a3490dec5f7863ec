"""The job queue shared by the backend and the worker: a redis list."""

import os

import redis

JOB_QUEUE = "i2m:jobs"


def connect() -> redis.Redis:
    # Like the production settings: an empty REDIS_URL falls back to the default, so a container
    # started without the env file runs, and fails per request rather than at start.
    return redis.Redis.from_url(os.environ.get("REDIS_URL") or "redis://redis:6379/0", socket_timeout=5)
