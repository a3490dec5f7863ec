"""Stand-in for flower: the queue's length behind HTTP basic auth, and an open /healthcheck."""

import argparse
import base64
import hmac
import json
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from app.broker import JOB_QUEUE, connect


def serve(port: int, basic_auth: str) -> None:
    expected = "Basic " + base64.b64encode(basic_auth.encode()).decode()
    client = connect()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/healthcheck":
                self.answer(200, "OK")
            elif not hmac.compare_digest(self.headers.get("Authorization", ""), expected):
                self.answer(401, "Unauthorized", {"WWW-Authenticate": 'Basic realm="flower"'})
            else:
                self.answer(200, json.dumps({"queued_jobs": client.llen(JOB_QUEUE)}))

        def answer(self, status, body, headers=None):
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body.encode())

    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=5555)
    parser.add_argument("--basic_auth", required=True)
    arguments = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # PID 1: stop at once on `docker stop`
    serve(arguments.port, arguments.basic_auth)
