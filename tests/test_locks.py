"""The stack's lock as operators meet it, on a stand-in stack of this module's own: a held lock
refused with exit 3 and broken with `i2m-ops unlock`, a lock of a dead holder taken over, and
readers (drift) while a real remediation holds it."""

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from canary import canary_hits
from conftest import REPO, VENV_BIN
from prometheus_client.parser import text_string_to_metric_families

REMEDIATION_IN_PROGRESS = 5


def start_remediation(stack, artifacts):
    """`i2m-ops remediate` in the background; returns the process once it holds the stack's lock,
    with the holder's fields."""
    process = subprocess.Popen([str(VENV_BIN / "i2m-ops"), "remediate", "--json", "-e", f"@{stack.vars_file()}",
                                "--artifacts-dir", str(artifacts)],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    holder = stack.project_dir / ".i2m-lock" / "holder"
    deadline = time.monotonic() + 300
    while not holder.is_file() or not holder.read_text().strip():
        assert time.monotonic() < deadline and process.poll() is None, "the remediation never took the stack's lock"
        time.sleep(0.2)
    return process, json.loads(holder.read_text())


def finish(stack, process):
    out, err = process.communicate(timeout=900)
    stack.outputs.append(out + err)
    assert not canary_hits(out + err, stack.secrets)
    return process.returncode, json.loads(out) if out.strip().startswith("{") else {}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


def write_holder(stack, pid: int) -> Path:
    """A stack's lock as a run of this controller with process pid leaves it; returns the lock."""
    lock = stack.project_dir / ".i2m-lock"
    lock.mkdir(parents=True)
    (lock / "holder").write_text(json.dumps({"controller": socket.gethostname(), "user": "tester", "pid": pid,
                                             "cli_pid": 0, "run_id": "test-holder", "action": "remediate",
                                             "started_at": "2026-11-30T00:00:00Z"}))
    return lock


def unlock(stack, *args):
    """`i2m-ops unlock ARGS --json` with no terminal on stdin: its exit code and document."""
    done = subprocess.run([str(VENV_BIN / "i2m-ops"), "unlock", *args, "--json", "-e", f"@{stack.vars_file()}"],
                          cwd=REPO, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    stack.outputs.append(done.stdout + done.stderr)
    return done.returncode, json.loads(done.stdout), done.stderr


def test_a_held_stack_lock_stops_remediation_with_exit_3_and_diagnose_with_5_and_unlock_breaks_it(stack):
    lock = write_holder(stack, os.getpid())  # this test's own process: alive
    code, document = stack.cli("remediate")
    assert code == 3, document.get("failed_tasks")
    assert f"tester@{socket.gethostname()}, pid {os.getpid()}, run test-holder" in document["lock_held"]["localhost"]
    assert any("the stack is locked by another run" in task["message"] for task in document["failed_tasks"])
    assert not (stack.project_dir / ".env.production").exists(), "the refused remediation wrote the env file"
    assert lock.is_dir(), "the refused remediation removed a lock it did not hold"

    code, document = stack.cli("diagnose")
    assert code == REMEDIATION_IN_PROGRESS, document.get("outcome")
    assert document["diagnosis"] == {} and f"pid {os.getpid()}, run test-holder" in document["lock_held"]["localhost"]

    code, document, stderr = unlock(stack)
    assert f"localhost: the stack's lock is held by tester@{socket.gethostname()}, pid {os.getpid()}" in stderr
    assert "not confirmed, the locks stay" in stderr and lock.is_dir()
    assert code == REMEDIATION_IN_PROGRESS and document["lock_broken"] == {}

    code, document, _ = unlock(stack, "--yes")
    assert code == 0, document["outcome"]
    assert "run test-holder" in document["lock_broken"]["localhost"] and document["lock_held"] == {}
    assert not lock.exists()


def test_a_lock_whose_holder_process_is_gone_is_taken_over_with_a_message(stack):
    gone = subprocess.Popen(["true"])
    gone.wait()
    write_holder(stack, gone.pid)
    code, document = stack.cli("remediate")
    assert code == 0, document.get("failed_tasks")
    assert f"pid {gone.pid}, run test-holder" in document["lock_broken"]["localhost"]
    assert "lock broken, it was held by" in (Path(document["artifacts"]) / "report.md").read_text()
    assert "its process is gone from this controller" in (Path(document["artifacts"]) / "remediate" / "stdout").read_text()
    assert not (stack.project_dir / ".i2m-lock").exists()


def test_a_killed_cli_leaves_a_lock_that_the_next_remediation_takes_over(stack, artifacts):
    """SIGKILL gives the CLI no chance to release anything: its ansible-playbook loses its terminal
    and dies, the stack's lock stays behind, naming processes that are gone."""
    remediation, holder = start_remediation(stack, artifacts)
    remediation.kill()
    remediation.communicate(timeout=60)
    deadline = time.monotonic() + 300
    while subprocess.run(["ps", "-p", str(holder["pid"])], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "the killed CLI's ansible-playbook still runs after 5 minutes"
        time.sleep(1)
    assert (stack.project_dir / ".i2m-lock").is_dir(), "the lock was released: nothing left to take over"

    code, document = stack.cli("remediate")
    assert code == 0, document.get("failed_tasks")
    assert f"pid {holder['pid']}, i2m-ops pid {remediation.pid}, run {holder['run_id']}" in document["lock_broken"]["localhost"]
    assert not (stack.project_dir / ".i2m-lock").exists()


def test_drift_during_a_remediation_reports_it_in_progress_with_its_holder(stack, artifacts, tmp_path):
    remediation, holder = start_remediation(stack, artifacts)
    assert holder["pid"] > 0 and holder["cli_pid"] == remediation.pid and holder["action"] == "remediate"
    assert holder["run_id"].endswith(tuple("0123456789abcdef")) and "-remediate-" in holder["run_id"]

    code, document = stack.cli("drift")
    metrics = tmp_path / "drift.prom"
    scheduled = subprocess.run([str(VENV_BIN / "i2m-ops"), "drift", "--format", "prometheus", "--output", str(metrics),
                                "-e", f"@{stack.vars_file()}"], cwd=REPO, capture_output=True, text=True, timeout=600)
    still_held = (stack.project_dir / ".i2m-lock").is_dir()
    remediated, _ = finish(stack, remediation)

    assert still_held, "the remediation ended before drift ran: the test proved nothing"
    assert code == REMEDIATION_IN_PROGRESS, document.get("outcome")
    assert document["outcome"].startswith("remediation in progress")
    assert document["drift"] == {} and document["failed_tasks"] == []
    assert f"pid {holder['pid']}" in document["lock_held"]["localhost"]
    assert holder["run_id"] in document["lock_held"]["localhost"]
    assert "remediation in progress, lock held by" in (Path(document["artifacts"]) / "report.md").read_text()

    assert scheduled.returncode == REMEDIATION_IN_PROGRESS, scheduled.stderr[-2000:]
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in text_string_to_metric_families(metrics.read_text()) for sample in family.samples}
    assert samples[("i2m_drift_remediation_in_progress", (("host", "localhost"),))] == 1
    assert not any(name == "i2m_drift_items" for name, _ in samples)
    assert samples[("i2m_drift_exit_code", ())] == REMEDIATION_IN_PROGRESS

    assert remediated == 0
    code, document = stack.cli("drift")
    assert code == 0 and document["lock_held"] == {}, document.get("outcome")


def test_no_canary_in_any_output(stack):
    for output in stack.outputs:
        assert not canary_hits(output, stack.secrets)
