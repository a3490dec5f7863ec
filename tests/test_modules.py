"""The roles' own modules on real processes, no Docker: build_session_stop stops a detached build
started as roles/compose/tasks/build_no_cache.yml starts it, and nothing else (a build that
ended, a session id that now belongs to another process)."""

import importlib.util
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO, VENV_BIN

MODULE = REPO / "roles" / "compose" / "library" / "build_session_stop.py"
# As build_no_cache.yml runs the build: its own session, named on the log's first line.
BUILD = "setsid --wait sh -c 'echo \"i2m-build-session=$$\"; \"$@\"; echo \"i2m-build-exit=$?\"' i2m-build \"$@\" > \"$LOG\" 2>&1"


def load_module():
    spec = importlib.util.spec_from_file_location("build_session_stop", MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def stopper():
    return load_module()


def start_build(log: Path, *command: str) -> subprocess.Popen:
    """A detached build of command, as the async job runs it; returns once its log names its session."""
    process = subprocess.Popen(["sh", "-c", BUILD, "build", *command], env={**os.environ, "LOG": str(log)})
    deadline = time.monotonic() + 10
    while not (log.is_file() and log.read_text().startswith("i2m-build-session=")):
        assert time.monotonic() < deadline, "the build never named its session"
        time.sleep(0.05)
    return process


def session_of(log: Path) -> int:
    return int(log.read_text().splitlines()[0].split("=")[1])


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_running_build_is_stopped_with_every_process_of_its_session(stopper, tmp_path):
    log = tmp_path / "build.log"
    build = start_build(log, "sh", "-c", "sleep 300 & sleep 300; wait")
    session = session_of(log)
    deadline = time.monotonic() + 10
    while len(stopper.session_processes(session)) < 4:  # the session's shell, the inner sh, two sleeps
        assert time.monotonic() < deadline
        time.sleep(0.05)
    members = stopper.session_processes(session)

    result = stopper.stop_build_session(str(log), timeout=5)

    assert result["state"] == "stopped" and result["changed"] and result["session"] == session
    assert set(members) <= set(result["pids"]) and result["killed"] == []
    assert build.wait(timeout=10) is not None
    assert not [pid for pid in members if alive(pid)], "a process of the build's session still runs"
    assert "i2m-build-exit" not in log.read_text()


def test_a_build_that_ignores_sigterm_is_killed_after_the_timeout(stopper, tmp_path):
    log = tmp_path / "build.log"
    build = start_build(log, "sh", "-c", "trap '' TERM; sleep 300")
    time.sleep(0.3)  # the trap set

    started = time.monotonic()
    result = stopper.stop_build_session(str(log), timeout=1)

    assert result["state"] == "stopped" and result["killed"], result
    assert 1 <= time.monotonic() - started < 5
    build.wait(timeout=10)
    assert not [pid for pid in result["pids"] if alive(pid)]


def test_a_build_that_ended_is_left_alone(stopper, tmp_path):
    log = tmp_path / "build.log"
    start_build(log, "true").wait(timeout=10)
    assert log.read_text().splitlines()[-1] == "i2m-build-exit=0"
    assert stopper.stop_build_session(str(log)) == {"state": "ended", "session": session_of(log), "pids": [],
                                                    "killed": [], "changed": False}


def test_a_session_id_now_held_by_another_process_is_left_alone(stopper, tmp_path):
    """The build was killed (no exit line) and its session id was reused by an unrelated process,
    which has the log neither open nor in its command line."""
    other = subprocess.Popen(["setsid", "sleep", "300"])
    try:
        deadline = time.monotonic() + 10
        while not stopper.session_processes(other.pid):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        log = tmp_path / "build.log"
        log.write_text(f"i2m-build-session={other.pid}\n#5 [backend 2/4] RUN sleep 600\n")

        result = stopper.stop_build_session(str(log))

        assert result["state"] == "ended" and not result["changed"] and result["pids"] == []
        assert alive(other.pid), "the stopper killed a process that was not the build's"
    finally:
        other.kill()
        other.wait()


def test_no_log_and_a_log_without_a_session(stopper, tmp_path):
    assert stopper.stop_build_session(str(tmp_path / "missing.log"))["state"] == "no log"
    old = tmp_path / "old.log"
    old.write_text("#5 [backend 2/4] RUN pip install\ni2m-build-exit=0\n")
    assert stopper.stop_build_session(str(old)) == {"state": "no session", "session": 0, "pids": [], "killed": [],
                                                    "changed": False}


def test_the_module_through_ansible_stops_a_running_build(tmp_path):
    """The module as the recovery runs it: its argument spec, check mode changing nothing, then for real."""
    log = tmp_path / "build.log"
    build = start_build(log, "sleep", "300")
    command = [str(VENV_BIN / "ansible"), "localhost", "-c", "local", "-i", "localhost,", "-M", str(MODULE.parent),
               "-m", "build_session_stop", "-a", f"log={log} timeout=5", "-o"]
    environment = {**os.environ, "ANSIBLE_PYTHON_INTERPRETER": str(VENV_BIN / "python"), "ANSIBLE_NOCOLOR": "1"}
    try:
        checked = subprocess.run([*command, "--check"], capture_output=True, text=True, timeout=120, env=environment)
        assert '"state": "stopped"' in checked.stdout and build.poll() is None, checked.stdout + checked.stderr
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=environment)
        assert "CHANGED" in done.stdout and '"state": "stopped"' in done.stdout, done.stdout + done.stderr
        assert build.wait(timeout=10) is not None
    finally:
        if build.poll() is None:
            os.killpg(session_of(log), signal.SIGKILL)
