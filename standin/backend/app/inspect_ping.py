"""The workers' healthcheck, in the spirit of `celery inspect ping`: asks the broker whether this
worker has answered lately. Exit 0 when it has, 1 otherwise."""

import socket
import sys

from app.broker import HEARTBEAT_PREFIX, connect

try:
    alive = connect().exists(HEARTBEAT_PREFIX + socket.gethostname())
except Exception as error:  # any broker failure is an unhealthy worker
    sys.exit(f"ping: broker unavailable ({type(error).__name__})")
sys.exit(0 if alive else "ping: no answer from this worker")
