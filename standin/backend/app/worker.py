"""Stand-in for the celery workers: takes upload jobs from redis, marks them done, and keeps a
heartbeat that `app.inspect_ping` reads (celery's `inspect ping` asks through the broker too)."""

import argparse
import signal
import socket
import sys
import time

import redis

from app.broker import HEARTBEAT_PREFIX, JOB_QUEUE, connect


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-Q", "--queues", default="default")
    queues = parser.parse_args().queues
    # PID 1 ignores SIGTERM by default: without this, `docker compose down` waits 10 s for us.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    client = connect()
    heartbeat = HEARTBEAT_PREFIX + socket.gethostname()
    print(f"worker ready, queues {queues}", flush=True)
    while True:
        try:
            client.set(heartbeat, queues, ex=60)
            item = client.brpop([JOB_QUEUE], timeout=2)
        except redis.RedisError as error:
            print(f"worker: broker unavailable ({type(error).__name__}), retrying", flush=True)
            time.sleep(2)
            continue
        if item:
            job_id = item[1].decode()
            client.hset(f"job:{job_id}", "status", "completed")
            print(f"worker: job {job_id} completed", flush=True)


if __name__ == "__main__":
    main()
