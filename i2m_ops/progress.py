"""What an operator sees while a run goes, from ansible-runner's events as they arrive.

On a terminal, a live display that rich redraws four times a second on its own, so its clock
moves between events: elapsed time, stage, host, current task and, during a build, the service
and the build step compose is at. Elsewhere, one plain line per task. Skipped tasks are never
shown: a task is shown once it has produced a result other than skipped, or has run for a
moment without being skipped.
"""

import contextlib
import re
import sys
import time

from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

SKIP_GRACE_S = 0.3
RESULTS = ("runner_on_ok", "runner_on_failed", "runner_on_unreachable", "runner_retry")
# compose --progress plain: "#7 [backend 2/4] RUN pip install ...", "#9 [backend] exporting to image"
BUILD_STEP = re.compile(r"^#\d+ \[(?P<service>[^\]\s]+)(?: (?P<step>[^\]]+))?\] (?P<what>.+)$")


def build_step(output: str) -> tuple | None:
    """The last build step named in compose's plain progress output, as (service, step, what).

    output: the tail of compose's log (any text). Returns None when no line names a step.
    """
    for line in reversed(output.splitlines()):
        match = BUILD_STEP.match(line.strip())
        if match and match["service"] != "internal":
            return match["service"], match["step"] or "", match["what"].strip()
    return None


class Progress:
    """An ansible-runner event observer that shows the run's progress on stderr.

    Call it with (stage name, event) for every event; use live() around each stage. With
    live=None it decides by whether stderr is a terminal. Raises nothing; writes only to stderr.
    """

    def __init__(self, live: bool | None = None):
        self.live_mode = sys.stderr.isatty() if live is None else live
        self.console = Console(stderr=True, highlight=False)
        self.started = time.monotonic()
        self.stage = self.host = self.task = ""
        self.pending = None  # (host, task, since): started, not yet known not to be skipped
        self.build = None  # (host, service, step, what)
        self.printed = set()

    def __call__(self, stage: str, event: dict) -> None:
        kind, data = event.get("event"), event.get("event_data", {})
        self.stage = stage
        key = (data.get("host", ""), data.get("task", ""))
        if kind == "runner_on_start":
            self.pending = (*key, time.monotonic())
        elif kind == "runner_on_skipped" and self.pending and self.pending[:2] == key:
            self.pending = None
        elif kind in RESULTS:
            self._shown(*key)
            if kind != "runner_retry":
                self.build = None  # a task ended: whatever was being built is done
            elif step := build_step(str(data.get("res", {}).get("stdout", ""))):
                self.build = (key[0], *step)

    def _shown(self, host: str, task: str) -> None:
        self.host, self.task = host, task
        if self.pending and self.pending[:2] == (host, task):
            self.pending = None
        if not self.live_mode and (self.stage, task) not in self.printed:
            self.printed.add((self.stage, task))
            self.console.print(f"[{self.elapsed():6.1f}s] {self.stage}: {host}: {task}", markup=False, soft_wrap=True)

    def elapsed(self) -> float:
        """Seconds since the run started (this object was made)."""
        return time.monotonic() - self.started

    def live(self):
        """A context manager for one stage: the live display on a terminal (redrawn by rich's own
        thread, 4 times a second), a no-op elsewhere."""
        if not self.live_mode:
            return contextlib.nullcontext()
        return Live(_Renderable(self), console=self.console, refresh_per_second=4, transient=False)

    def lines(self) -> list:
        """The display's text lines: clock, stage, host, task, and the build step if any."""
        if self.pending and time.monotonic() - self.pending[2] >= SKIP_GRACE_S:
            self._shown(*self.pending[:2])
        minutes, seconds = divmod(int(self.elapsed()), 60)
        lines = [f"{minutes:02d}:{seconds:02d}  {self.stage} | {self.host or '-'} | {self.task or 'starting'}"]
        if self.build:
            host, service, step, what = self.build
            lines.append(f"building {service} on {host}: {f'step {step}: ' if step else ''}{what}")
        return lines


class _Renderable:
    """Rendered at every refresh, so the clock moves without events."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.spinner = Spinner("dots")

    def __rich__(self):
        lines = self.progress.lines()
        self.spinner.update(text=Text(lines[0], overflow="ellipsis", no_wrap=True))
        rest = [Text("  " + line, overflow="ellipsis", no_wrap=True, style="dim") for line in lines[1:]]
        return Group(self.spinner, *rest)

