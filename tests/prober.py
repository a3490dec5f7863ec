"""A load of user requests through nginx at a fixed rate, for downtime tests and the benchmark:
the API health check and an authenticated upload, in turn."""

import threading
import time
from dataclasses import dataclass

import requests


@dataclass
class Downtime:
    sent: int
    failed: int
    longest_gap_s: float
    failures: list


class Prober(threading.Thread):
    """Sends one request every 1/rate seconds until stopped; a request fails on an error status,
    a refused connection or no answer within `timeout` seconds."""

    def __init__(self, base_url: str, api_key: str, rate: float = 20, timeout: float = 5):
        super().__init__(daemon=True)
        self.base_url, self.interval, self.timeout = base_url, 1 / rate, timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"
        self.results, self.halted = [], threading.Event()

    def request(self, number: int) -> str | None:
        """None when the request succeeded, else what went wrong (never the key)."""
        try:
            if number % 2:
                # verify=False per request: a session's setting loses to REQUESTS_CA_BUNDLE
                answer = self.session.post(f"{self.base_url}/api/v1/upload/", timeout=self.timeout, verify=False,
                                           files={"files": ("probe.png", b"probe", "image/png")})
            else:
                answer = self.session.get(f"{self.base_url}/api/v1/health/", timeout=self.timeout, verify=False)
        except requests.RequestException as error:
            return type(error).__name__
        return None if answer.status_code == 200 else f"{answer.request.method} {answer.status_code}"

    def run(self) -> None:
        next_at, number = time.monotonic(), 0
        while not self.halted.is_set():
            started = time.monotonic()
            self.results.append((started, self.request(number)))
            number += 1
            next_at += self.interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    def stop(self) -> Downtime:
        self.halted.set()
        self.join()
        failures = [error for _, error in self.results if error]
        longest, last_ok = 0.0, self.results[0][0] if self.results else 0.0
        for moment, error in self.results:
            if error is None:
                longest, last_ok = max(longest, moment - last_ok), moment
        if self.results and self.results[-1][1]:
            longest = max(longest, self.results[-1][0] - last_ok)
        return Downtime(sent=len(self.results), failed=len(failures), longest_gap_s=round(longest, 2), failures=failures[:10])
