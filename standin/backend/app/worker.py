"""Stand-in for the celery workers: takes upload jobs from redis and marks them done."""

import signal
import sys
import time

import redis

from app.queue import JOB_QUEUE, connect


def main() -> None:
    # PID 1 ignores SIGTERM by default: without this, `docker compose down` waits 10 s for us.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    client = connect()
    print("worker ready", flush=True)
    while True:
        try:
            item = client.brpop(JOB_QUEUE, timeout=2)
        except redis.RedisError as error:
            print(f"worker: redis unavailable ({type(error).__name__}), retrying", flush=True)
            time.sleep(2)
            continue
        if item:
            job_id = item[1].decode()
            client.hset(f"job:{job_id}", "status", "completed")
            print(f"worker: job {job_id} completed", flush=True)


if __name__ == "__main__":
    main()
