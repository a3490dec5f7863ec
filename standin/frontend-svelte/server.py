"""Stand-in for the SvelteKit frontend: a page naming the API it was built for, and /health."""

import os
import pathlib
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_URL = pathlib.Path("/app/public-api-url").read_text()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = "ok" if self.path == "/health" else f"<!doctype html><title>image2model</title><p>API: {API_URL}</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain" if self.path == "/health" else "text/html")
        self.end_headers()
        self.wfile.write(body.encode())

    def do_HEAD(self):
        self.send_response(200)
        self.end_headers()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # PID 1: stop at once on `docker stop`
    ThreadingHTTPServer((os.environ.get("HOST", "0.0.0.0"), int(os.environ.get("PORT", "3000"))), Handler).serve_forever()
