"""The stack's lock as operators meet it, on a stand-in stack of this module's own: a held lock
refused with exit 3 and broken with `i2m-ops unlock`, a lock of a dead holder taken over,
readers (drift) while a real remediation holds it, and remediations interrupted (SIGINT to the
CLI) during the build, after the recreate, and twice."""

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from canary import canary_hits
from conftest import REPO, VENV_BIN
from prometheus_client.parser import text_string_to_metric_families
from run_schema import assert_matches_schema

REMEDIATION_IN_PROGRESS = 5
INTERRUPTED = 130


def start_remediation(stack, artifacts, vars_file: Path | None = None):
    """`i2m-ops remediate` in the background; returns the process once it holds the stack's lock
    (the holder names this process: not a lock a previous run left), with the holder's fields."""
    process = subprocess.Popen([str(VENV_BIN / "i2m-ops"), "remediate", "--json", "-e", f"@{vars_file or stack.vars_file()}",
                                "--artifacts-dir", str(artifacts)],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    holder = stack.project_dir / ".i2m-lock" / "holder"
    deadline = time.monotonic() + 300
    while (fields := holder_fields(holder)).get("cli_pid") != process.pid:
        assert time.monotonic() < deadline and process.poll() is None, "the remediation never took the stack's lock"
        time.sleep(0.2)
    return process, fields


def holder_fields(holder: Path) -> dict:
    """The lock holder's fields; {} while there is none or it is being written."""
    try:
        return json.loads(holder.read_text())
    except (OSError, ValueError):
        return {}


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
    lock = write_holder(stack, gone.pid)
    code, document = stack.cli("drift")  # a dead lock is no remediation: the stack is read past it
    assert code != REMEDIATION_IN_PROGRESS and document["lock_held"] == {}, document.get("failed_tasks")
    assert document["drift"]["localhost"] and document["failed_tasks"] == [], document["outcome"]
    assert lock.is_dir(), "drift broke a lock: only unlock and remediate do"
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


def run_processes(run_id: str) -> list:
    """The processes whose environment carries the run's id (every process of a run inherits it)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"I2M_OPS_RUN_ID={run_id}".encode() in environ.read_bytes().split(b"\0"):
                found.append(f"{environ.parent.name}: {(environ.parent / 'cmdline').read_bytes()[:200]!r}")
        except OSError:
            continue
    return found


def wait_for(condition, what: str, process, timeout: float = 300) -> None:
    """Polls condition every 0.1 s until it holds; fails if the process ends first or on timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the remediation ended before {what}: {process.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.1)


def journal_phase(stack) -> str:
    try:
        return json.loads((stack.project_dir / ".i2m-lock" / "journal.json").read_text())["phase"]
    except (OSError, ValueError, KeyError):
        return ""


@pytest.fixture(scope="module")
def slow_standin(tmp_path_factory):
    """The stand-in with a backend build step that lasts 10 minutes: a remediation is interrupted
    while it runs (the recovery stops the build)."""
    source = tmp_path_factory.mktemp("slow-standin") / "standin"
    shutil.copytree(REPO / "standin", source)
    dockerfile = source / "backend" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("WORKDIR /app\n", "WORKDIR /app\nRUN sleep 600\n", 1))
    return source


def changed_env(stack) -> dict:
    """i2m_env with one value other than the stack runs: an interrupted run's env file differs."""
    env = yaml.safe_load((REPO / "inventory" / "local" / "group_vars" / "all" / "env.yml").read_text())["i2m_env"]
    return {**env, "RATE_LIMIT_PER_MINUTE": str(61 + len(list(stack.vars_dir.iterdir())))}


def running_version(stack) -> tuple:
    """A remediated stack to interrupt (remediated first if it is not), its env file's bytes and
    the backend container's id and image. No lock is there: a remediation starts at once."""
    if not (stack.project_dir / ".env.production").is_file() or stack.container("backend").status != "running":
        assert stack.cli("remediate")[0] == 0
    assert not (stack.project_dir / ".i2m-lock").exists(), "a lock is left: the next remediation cannot start at once"
    backend = stack.container("backend")
    return (stack.project_dir / ".env.production").read_bytes(), backend.id, backend.image.id


def assert_recovered(stack, process, artifacts, env_before: bytes, reached: str, action: str) -> dict:
    """Exit 130, outcome interrupted, the run's recovery verified, the env file back byte for byte,
    the lock gone, an audit line, no process of the run left; then the next remediation at once."""
    code, document = finish(stack, process)
    assert code == INTERRUPTED, (document.get("outcome"), document.get("failed_tasks"))
    assert document["outcome"] == "interrupted" and document["interrupted"]["signal"] == "SIGINT"
    assert document["interrupted"]["stage"] == "remediate" and not document["interrupted"]["stopped_at_once"]
    assert reached in document["interrupted"]["hosts"]["localhost"]
    recovery = document["recovery"]["localhost"]
    assert recovery["ok"] and recovery["verified"] and action in recovery["action"], recovery
    assert_matches_schema(document)
    assert (stack.project_dir / ".env.production").read_bytes() == env_before, "the env file was not put back"
    assert not (stack.project_dir / ".i2m-lock").exists(), "the lock was not released"
    audit = (stack.project_dir / ".i2m-audit.log").read_text().splitlines()[-1]
    assert f"result=interrupted {reached}" in audit and "verified" in audit, audit
    assert not run_processes(document["run_id"]), "processes of the interrupted run are left"
    report = (Path(document["artifacts"]) / "report.md").read_text()
    assert "Interrupted by SIGINT during the `remediate` stage" in report and "recovery:" in report
    assert stack.cli("verify")[0] == 0
    return document


# The next three tests run in this order, each one's next remediation being the next test's
# (which starts at once: no lock left); the last ends with a remediation that succeeds.


def test_sigint_during_the_build_stops_it_and_puts_the_env_file_and_images_back(stack, artifacts, slow_standin):
    env_before, backend_before, image_before = running_version(stack)
    remediation, _ = start_remediation(stack, artifacts, stack.vars_file(i2m_standin_source=str(slow_standin),
                                                                         i2m_env=changed_env(stack)))
    build_log = stack.project_dir / ".i2m-build.log"
    wait_for(lambda: journal_phase(stack) == "build" and build_log.is_file() and "RUN sleep 600" in build_log.read_text(),
             "build step to interrupt", remediation)
    assert (stack.project_dir / ".env.production").read_bytes() != env_before, "the run did not change the env file"
    remediation.send_signal(signal.SIGINT)
    assert_recovered(stack, remediation, artifacts, env_before, "during the --no-cache build",
                     "build stopped, env file and image tags put back, nothing recreated")
    assert "i2m-build-exit" not in build_log.read_text(), "the build was not stopped: it ended"
    backend = stack.container("backend")
    assert (backend.id, backend.image.id) == (backend_before, image_before), "the previous containers were not kept"


def test_sigint_after_the_recreate_rolls_back_to_the_previous_version(stack, artifacts):
    env_before, backend_before, image_before = running_version(stack)
    remediation, _ = start_remediation(stack, artifacts, stack.vars_file(i2m_env=changed_env(stack)))
    wait_for(lambda: any(container.id != backend_before for container in stack.containers("backend")),
             "new backend container", remediation)
    remediation.send_signal(signal.SIGINT)
    assert_recovered(stack, remediation, artifacts, env_before, "once the containers were being recreated", "rolled back")
    assert stack.container("backend").image.id == image_before, "the backend does not run the previous image"


def test_a_second_sigint_stops_at_once_and_prints_the_commands_that_recover(stack, artifacts):
    env_before, _, _ = running_version(stack)
    remediation, holder = start_remediation(stack, artifacts, stack.vars_file(i2m_env=changed_env(stack)))
    remediation.send_signal(signal.SIGINT)
    recover_stage = artifacts / holder["run_id"] / "recover"
    wait_for(recover_stage.exists, "recovery stage", remediation, timeout=120)
    remediation.send_signal(signal.SIGINT)
    started = time.monotonic()
    out, err = remediation.communicate(timeout=60)
    assert time.monotonic() - started < 10, "the second SIGINT did not stop the CLI at once"
    stack.outputs.append(out + err)
    document = json.loads(out)
    assert remediation.returncode == INTERRUPTED and document["interrupted"]["stopped_at_once"], err[-2000:]
    assert (stack.project_dir / ".i2m-lock").is_dir(), "no lock left: the recovery was not cut short"
    assert not run_processes(holder["run_id"]), "processes of the stopped run are left"
    lines = err.splitlines()
    recover_command = lines[lines.index(next(line for line in lines if line.startswith("To recover"))) + 1].strip()
    remediate_command = lines[lines.index("Then, to remediate again:") + 1].strip()
    assert document["interrupted"]["commands"] == [recover_command, remediate_command]
    assert "-e @/" in recover_command and str(stack.inventory) in recover_command

    recovered = subprocess.run(shlex.split(recover_command), cwd="/", capture_output=True, text=True, timeout=600)
    stack.outputs.append(recovered.stdout + recovered.stderr)
    assert recovered.returncode == 0, recovered.stdout[-3000:]
    assert "recovery:" in recovered.stdout and holder["run_id"] in recovered.stdout
    assert (stack.project_dir / ".env.production").read_bytes() == env_before
    assert not (stack.project_dir / ".i2m-lock").exists()
    assert "result=interrupted" in (stack.project_dir / ".i2m-audit.log").read_text().splitlines()[-1]
    remediated = subprocess.run(shlex.split(remediate_command), cwd="/", capture_output=True, text=True, timeout=900)
    stack.outputs.append(remediated.stdout + remediated.stderr)
    assert remediated.returncode == 0 and "lock broken" not in remediated.stdout, remediated.stdout[-3000:]


def test_no_canary_in_any_output(stack):
    for output in stack.outputs:
        assert not canary_hits(output, stack.secrets)
