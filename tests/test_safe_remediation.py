"""Safe remediation, each fault injected for real into a stand-in stack of this module's own:
the run fails, says why and that it rolled back, the previous version runs healthy again, and
the data written before is still there."""

import shutil
import subprocess
import time

import pytest
import requests
from canary import canary_hits
from conftest import REPO

STANDIN = REPO / "standin"


def nginx_url(stack) -> str:
    binding = stack.container("nginx").attrs["NetworkSettings"]["Ports"]["80/tcp"][0]
    return f"http://127.0.0.1:{binding['HostPort']}"


def redis_get(stack, key) -> str:
    result = stack.container("redis").exec_run(["redis-cli", "GET", key], environment={"REDISCLI_AUTH": stack.secrets["REDIS_PASSWORD"]})
    return result.output.decode().strip()


@pytest.fixture(scope="module")
def healthy(stack):
    """The stack deployed and remediated once, with data written through it."""
    assert stack.playbook("remediate.yml").returncode == 0
    assert stack.container("redis").exec_run(["redis-cli", "SET", "i2m:test:kept", "before"],
                                             environment={"REDISCLI_AUTH": stack.secrets["REDIS_PASSWORD"]}).exit_code == 0
    upload = requests.post(f"{nginx_url(stack)}/api/v1/upload/", headers={"Authorization": f"Bearer {stack.secrets['API_KEY']}"},
                           files={"files": ("kept.png", b"written before", "image/png")}, timeout=10)
    assert upload.status_code == 200
    return {"job_id": upload.json()["job_id"]}


def broken_standin(tmp_path, path: str, change) -> str:
    source = tmp_path / "standin"
    shutil.copytree(STANDIN, source)
    target = source / path
    target.write_text(change(target.read_text()))
    return str(source)


def assert_previous_version_healthy_with_its_data(stack, data):
    verified = stack.playbook("verify.yml")
    assert verified.returncode == 0, verified.output[-3000:]
    assert redis_get(stack, "i2m:test:kept") == "before"
    listing = stack.container("backend").exec_run(["ls", f"/data/uploads/{data['job_id']}"])
    assert listing.output.decode().split() == ["kept.png"]


@pytest.mark.parametrize("strategy", ["build-first", "report"])
def test_failed_build_rolls_back(stack, healthy, tmp_path, strategy):
    source = broken_standin(tmp_path, "backend/Dockerfile", lambda text: text.replace("WORKDIR /srv", "RUN false\nWORKDIR /srv"))
    run = stack.playbook("remediate.yml", stack.vars_file(i2m_standin_source=source, i2m_remediate_strategy=strategy))
    assert run.returncode != 0
    assert "failed at 'Build without the cache (compose build --no-cache)'" in run.output
    assert "Rolled back: the previous env file and images run again and pass verification." in run.output
    assert_previous_version_healthy_with_its_data(stack, healthy)


def test_backend_that_never_becomes_healthy_rolls_back(stack, healthy, tmp_path):
    source = broken_standin(tmp_path, "backend/app/main.py", lambda text: 'raise SystemExit("crash at start")\n' + text)
    run = stack.playbook("remediate.yml", stack.vars_file(i2m_standin_source=source, compose_wait_timeout=20))
    assert run.returncode != 0
    assert "is not healthy after 20 s: backend" in run.output
    assert "Rolled back" in run.output
    assert_previous_version_healthy_with_its_data(stack, healthy)


def test_failed_verification_rolls_back(stack, healthy, tmp_path):
    source = broken_standin(tmp_path, "backend/app/main.py",
                            lambda text: text.replace("if not hmac.compare_digest(", "if True or not hmac.compare_digest("))
    run = stack.playbook("remediate.yml", stack.vars_file(i2m_standin_source=source))
    assert run.returncode != 0
    assert "upload with API key: answered 403" in run.output
    assert "Rolled back" in run.output
    assert_previous_version_healthy_with_its_data(stack, healthy)


def test_second_remediation_on_a_locked_stack_stops_at_once_naming_the_holder(stack, healthy):
    first = subprocess.Popen([str(REPO / ".venv/bin/ansible-playbook"), "playbooks/remediate.yml", "-i", "inventory/local",
                              "-e", f"@{stack.vars_file()}"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lock = stack.project_dir / ".i2m-lock" / "holder"
    deadline = time.monotonic() + 120
    while not lock.exists():
        assert time.monotonic() < deadline and first.poll() is None, "the first remediation never took the lock"
        time.sleep(0.2)
    holder = lock.read_text().strip()
    second = stack.playbook("remediate.yml")
    first_output, _ = first.communicate(timeout=900)
    stack.outputs.append(first_output)
    assert second.returncode != 0
    assert f"the stack is locked by another run: {holder}" in second.output
    assert "Build without the cache" not in second.output
    assert first.returncode == 0, first_output[-3000:]
    assert not lock.exists()
    assert_previous_version_healthy_with_its_data(stack, healthy)


def test_audit_log_records_every_remediation(stack, healthy):
    lines = (stack.project_dir / ".i2m-audit.log").read_text().splitlines()
    results = [line.split(" result=", 1)[1] for line in lines]
    assert results.count("ok (build-first)") >= 2
    assert "failed, rolled back (report)" in results and results.count("failed, rolled back (build-first)") >= 3


def test_no_canary_in_any_output(stack):
    assert len(stack.outputs) >= 10
    assert canary_hits("\n".join(stack.outputs), stack.secrets) == []
