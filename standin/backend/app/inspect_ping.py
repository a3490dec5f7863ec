"""The workers' healthcheck, in the spirit of `celery inspect ping`: asks the broker whether this
worker has answered lately. Exit 0 when it has, 1 otherwise.

It speaks redis's protocol over a socket instead of importing the redis client: the check runs
every few seconds in every worker, and the client library's import alone cost a quarter of a
second of CPU each time (https://redis.io/docs/latest/develop/reference/protocol-spec/).
"""

import os
import socket
import sys
from urllib.parse import unquote, urlsplit

HEARTBEAT_PREFIX = "i2m:worker:"  # app.broker's, which this check does not import


def command(*parts: str) -> bytes:
    encoded = [part.encode() for part in parts]
    return b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in encoded)


def ask(connection: socket.socket, *parts: str) -> bytes:
    connection.sendall(command(*parts))
    answer = connection.recv(512)
    if answer.startswith(b"-"):
        raise ConnectionError(answer.decode(errors="replace").strip())
    return answer


def heartbeat_seen() -> bool:
    """Whether the broker holds this worker's heartbeat (app.worker refreshes it every 2 s)."""
    url = urlsplit(os.environ.get("CELERY_BROKER_URL") or "redis://redis:6379/0")
    with socket.create_connection((url.hostname or "redis", url.port or 6379), timeout=5) as connection:
        if url.password:
            ask(connection, "AUTH", *([unquote(url.username)] if url.username else []), unquote(url.password))
        database = url.path.lstrip("/") or "0"
        if database != "0":
            ask(connection, "SELECT", database)
        return ask(connection, "EXISTS", HEARTBEAT_PREFIX + socket.gethostname()).startswith(b":1")


try:
    alive = heartbeat_seen()
except Exception as error:  # any broker failure is an unhealthy worker
    sys.exit(f"ping: broker unavailable ({type(error).__name__})")
sys.exit(0 if alive else "ping: no answer from this worker")
