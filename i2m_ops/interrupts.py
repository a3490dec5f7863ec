"""SIGINT and SIGTERM during a run: the first is passed on to the playbook, a second stops at once.

ansible-runner starts ansible-playbook in a session of its own, behind a pseudo-terminal, so a
Ctrl-C on the operator's terminal reaches the CLI only. On the first signal the CLI sends SIGINT
to the playbook (Ansible forwards it to its workers and exits with 99) and starts no further
stage; the CLI then runs the recovery. A second signal stops at once: every process of the run
(each carries the run's id in its environment, I2M_OPS_RUN_ID) is killed and the CLI exits,
printing how to recover.
"""

import contextlib
import os
import signal
import sys
import time

RUN_ID_VARIABLE = "I2M_OPS_RUN_ID"
# Set on the --no-cache build's async job (roles/compose/tasks/build_no_cache.yml): the build
# outlives the playbook, until the recovery stops it.
BUILD_JOB_VARIABLE = "I2M_OPS_BUILD_JOB"
SIGNALS = (signal.SIGINT, signal.SIGTERM)
INTERRUPTED_EXIT = 130


class StopNow(BaseException):
    """A second signal: the run stops at once, without its recovery. Not an Exception, so that no
    `except Exception` on the way swallows it."""


class Interrupted(BaseException):
    """A signal while the CLI waits for an answer at a prompt: nothing runs that needs a rescue."""


def run_processes(run_id: str, *, playbook_only: bool = False) -> list:
    """The processes of this machine whose environment carries I2M_OPS_RUN_ID=run_id, other than
    this one, ascending. playbook_only: only the playbook's own (workers, modules, their
    commands), not the detached build job nor an SSH connection kept open for reuse (its
    title ends with [mux]). Processes that cannot be read (another user's, gone) are not listed."""
    wanted = f"{RUN_ID_VARIABLE}={run_id}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                variables = handle.read().split(b"\0")
            if playbook_only:
                with open(f"/proc/{name}/cmdline", "rb") as handle:
                    title = handle.read().rstrip(b"\0")
        except OSError:
            continue
        if wanted not in variables:
            continue
        if playbook_only and (title.endswith(b"[mux]") or any(v.startswith(f"{BUILD_JOB_VARIABLE}=".encode()) for v in variables)):
            continue
        found.append(int(name))
    return sorted(found)


def wait_for_playbook_processes(run_id: str, timeout: float = 20) -> list:
    """After an interrupted playbook has exited: waits, at most timeout seconds, until its workers
    and the commands they ran (which got the signal too) have ended, so that the recovery does
    not race a command still stopping. Returns those still there at the end."""
    deadline = time.monotonic() + timeout
    while (left := run_processes(run_id, playbook_only=True)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


class Interrupts:
    """The CLI's handlers for SIGINT and SIGTERM while a run goes (a context manager).

    begin(stage) and end() frame each stage; observe(stage, event) takes ansible-runner's events,
    from which the playbook's pid is learnt (playbook_on_start). The first signal is passed on to
    the running playbook as SIGINT, as soon as its pid is known; `received` names it, and `stage`
    the stage it reached (None between stages). A second one kills every process of the run
    (run_id) and raises StopNow. Inside prompting(), the first signal raises Interrupted.
    """

    def __init__(self):
        self.run_id = None
        self.received = None
        self.stage = None
        self.stopped_at_once = False
        # the first signal came at a prompt, or once every stage had ended
        self.prompted = False
        self.after_stages = False
        self._done = False
        self._current = None
        self._pid = None
        self._pending = False
        self._prompting = False
        self._previous = {}

    def __enter__(self):
        self._previous = {signum: signal.signal(signum, self._handle) for signum in SIGNALS}
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def begin(self, stage: str) -> None:
        self._current, self._pid = stage, None

    def end(self) -> None:
        self._current, self._pid, self._pending = None, None, False

    def done(self) -> None:
        """Every stage has ended: a signal from now on stops nothing."""
        self._done = True

    def observe(self, stage: str, event: dict) -> None:
        if event.get("event") == "playbook_on_start" and event.get("pid"):
            self._pid = int(event["pid"])
            self._forward()

    @contextlib.contextmanager
    def prompting(self):
        """Around a prompt: there, the first signal raises Interrupted."""
        self._prompting = True
        try:
            yield
        finally:
            self._prompting = False

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.received is None:
            self.received, self.stage, self._pending, self.after_stages = name, self._current, True, self._done
            if self._prompting:
                self.prompted = True
                raise Interrupted()
            if self._current:
                print(f"\ni2m-ops: {name}: stopping the {self._current} playbook; what it changed is put back. "
                      "A second Ctrl-C stops at once.", file=sys.stderr, flush=True)
            self._forward()
            return
        if self._done:
            return  # every stage has ended: only the report is being written
        for each in SIGNALS:
            signal.signal(each, signal.SIG_IGN)
        self.stopped_at_once = True
        self.kill_run()
        raise StopNow()

    def _forward(self) -> None:
        if self._pending and self._pid:
            self._pending = False
            try:
                os.kill(self._pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    def kill_run(self) -> None:
        """SIGKILL to every process of the run, the detached build included."""
        if not self.run_id:
            return
        for pid in run_processes(self.run_id):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
