"""Safe remediation, each fault injected for real into a stand-in stack of this module's own:
the run fails, says why and that it rolled back, the previous version runs healthy again, and
the data written before is still there."""

import json
import os
import shutil
import subprocess
import sys
import time

import docker
import pytest
import yaml
from canary import canary_hits
from conftest import QUICK_COMPOSE_FILES, REPO
from prober import Prober

sys.path.insert(0, str(REPO / "roles/compose/filter_plugins"))
from compose import compose_rolling_obstacles  # noqa: E402  (a role's filter, not a package)

STANDIN = REPO / "standin"
ROLLING_FILES = [*QUICK_COMPOSE_FILES, "docker-compose.rolling.yml"]


def redis_get(stack, key) -> str:
    result = stack.container("redis").exec_run(["redis-cli", "GET", key], environment={"REDISCLI_AUTH": stack.secrets["REDIS_PASSWORD"]})
    return result.output.decode().strip()


@pytest.fixture(scope="module")
def healthy(stack):
    """The stack deployed and remediated once, with data written through it."""
    assert stack.playbook("remediate.yml").returncode == 0
    assert stack.container("redis").exec_run(["redis-cli", "SET", "i2m:test:kept", "before"],
                                             environment={"REDISCLI_AUTH": stack.secrets["REDIS_PASSWORD"]}).exit_code == 0
    upload = stack.upload(stack.secrets["API_KEY"], "kept.png", b"written before")
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
    listing = stack.container("backend").exec_run(["ls", f"/app/uploads/{data['job_id']}"])
    assert listing.output.decode().split() == ["kept.png"]


@pytest.mark.parametrize("strategy", ["build-first", "report"])
def test_failed_build_rolls_back(stack, healthy, tmp_path, strategy):
    source = broken_standin(tmp_path, "backend/Dockerfile", lambda text: text.replace("WORKDIR /app", "RUN false\nWORKDIR /app"))
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
    holder = json.loads(lock.read_text())
    second = stack.playbook("remediate.yml")
    first_output, _ = first.communicate(timeout=900)
    stack.outputs.append(first_output)
    assert second.returncode != 0
    assert (f"the stack is locked by another run: {holder['user']}@{holder['controller']}, pid {holder['pid']}, "
            f"run none (not run by i2m-ops), remediate since {holder['started_at']}") in second.output
    assert "Build without the cache" not in second.output
    assert first.returncode == 0, first_output[-3000:]
    assert not lock.exists()
    assert_previous_version_healthy_with_its_data(stack, healthy)


def test_rolling_obstacles_name_what_keeps_a_service_from_running_twice():
    config = {"services": {"backend": {"container_name": "app-backend", "ports": [{"target": 8000, "published": "8000"}]},
                           "worker": {"expose": ["8000"], "ports": [{"target": 9000}]}}}
    assert compose_rolling_obstacles(config, ["backend", "worker", "api"]) == [
        "backend has a fixed container_name (app-backend)", "backend publishes host ports (8000)",
        "api is not a service of the compose files"]


def test_rolling_refuses_a_fixed_container_name_before_changing_anything(stack, healthy):
    before = stack.container("backend").id
    run = stack.playbook("remediate.yml", stack.vars_file(i2m_remediate_strategy="rolling"))
    assert run.returncode != 0
    assert "the rolling strategy cannot start a second container beside the first: " \
           "backend has a fixed container_name (${COMPOSE_PROJECT_NAME}-backend)" in run.output
    assert "Take the stack's lock" not in run.output and "Build without the cache" not in run.output
    assert stack.container("backend").id == before


@pytest.fixture
def without_compose_v2(tmp_path):
    """The environment of a host whose docker CLI has no compose plugin: DOCKER_CONFIG pointed at
    an empty folder hides the plugin that bootstrap installs in ~/.docker/cli-plugins."""
    env = {"DOCKER_CONFIG": str(tmp_path)}
    if subprocess.run(["docker", "compose", "version"], env={**os.environ, **env}, capture_output=True).returncode == 0:
        pytest.skip("this host has a system-wide compose v2 plugin, which DOCKER_CONFIG cannot hide")
    return env


def test_host_without_compose_v2_and_v1_refused_stops_in_preflight(stack, healthy, without_compose_v2):
    before = stack.container("backend").id
    run = stack.playbook("remediate.yml", stack.vars_file(compose_allow_v1=False), env=without_compose_v2)
    assert run.returncode != 0
    assert "has no usable compose: `docker compose` (v2 plugin) is missing and docker-compose v1 is not allowed" in run.output
    assert "Take the stack's lock" not in run.output
    assert stack.container("backend").id == before


def inventory_env_without(*keys) -> dict:
    env = yaml.safe_load((REPO / "inventory/local/group_vars/all/env.yml").read_text())["i2m_env"]
    return {key: value for key, value in env.items() if key not in keys}


# Each input is wrong in a way that compose would take without a word, or find only after changes.
@pytest.mark.parametrize("overrides, phrases", [
    # controller: the embedded default's case, where the run itself copies the stand-in's files.
    (lambda stack: {"preflight_compose_files_source": "controller", "i2m_compose_files": [*stack.compose_files, "docker-compose.typo.yml"]},
     ["docker-compose.typo.yml not found in", "check i2m_compose_files"]),
    (lambda stack: {"preflight_compose_files_source": "host", "i2m_compose_files": [*stack.compose_files, "docker-compose.typo.yml"]},
     ["docker-compose.typo.yml not found in", "check i2m_compose_files"]),
    (lambda stack: {"i2m_env": inventory_env_without("RATE_LIMIT_PER_MINUTE", "BACKEND_CORS_ORIGINS")},
     ["The compose files use BACKEND_CORS_ORIGINS (backend: environment); RATE_LIMIT_PER_MINUTE (backend: environment) with no default"]),
    (lambda stack: {"i2m_env_secrets": {**stack.secrets, "REDIS_PASSWORD": stack.secrets["REDIS_PASSWORD"] + " x'y"}},
     ["redis: command uses REDIS_PASSWORD; redis: healthcheck uses REDIS_PASSWORD: compose pastes the value into the command line"]),
], ids=["compose-file-missing-from-standin-source", "compose-file-missing-on-host", "variables-set-nowhere", "secret-breaking-a-command"])
def test_an_input_compose_would_misread_stops_in_preflight_before_any_change(stack, healthy, overrides, phrases):
    before = stack.container("backend").id
    env_file = stack.project_dir / ".env.production"
    env_file_mtime = env_file.stat().st_mtime_ns
    run = stack.playbook("remediate.yml", stack.vars_file(**overrides(stack)))
    assert run.returncode != 0
    for phrase in phrases:
        assert phrase in run.output, run.output[-3000:]
    assert "Take the stack's lock" not in run.output
    assert stack.container("backend").id == before and env_file.stat().st_mtime_ns == env_file_mtime


def test_an_orphan_container_is_drift_and_remediation_removes_it_by_name(stack, healthy):
    # A worker renamed in the compose file leaves its old container running, with the labels
    # compose gave it (compose counts as its own only containers with a config hash).
    labels = {"com.docker.compose.project": stack.name, "com.docker.compose.service": "worker-old",
              "com.docker.compose.oneoff": "False", "com.docker.compose.config-hash": "0" * 64}
    orphan = docker.from_env().containers.run("i2m-base:trixie", ["sleep", "600"], detach=True, name=f"{stack.name}-worker-old",
                                              labels=labels)
    code, document = stack.cli("drift")
    assert code == 2
    assert [(item["service"], item["ok"]) for item in document["drift"]["localhost"] if item["item"] == "orphan"] == [("worker-old", False)]
    run = stack.playbook("remediate.yml")
    assert run.returncode == 0, run.output[-3000:]
    said = " ".join(run.output.split())  # Ansible's output folds long messages
    assert f"removed orphan containers (their services are no longer in the compose files): {orphan.name}" in said, run.output[-3000:]
    assert not docker.from_env().containers.list(all=True, filters={"name": orphan.name})


def test_a_verified_remediation_removes_the_image_its_rollback_tag_no_longer_names(stack, healthy):
    # Each --no-cache remediation leaves the image the service ran before: one is kept for a rollback.
    images = docker.from_env().images
    rollback_tag = f"{stack.name}-backend:i2m-rollback"
    previous = images.get(rollback_tag).id
    run = stack.playbook("remediate.yml")
    assert run.returncode == 0, run.output[-3000:]
    assert images.get(rollback_tag).id != previous
    with pytest.raises(docker.errors.ImageNotFound):
        images.get(previous)


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose v1 is not installed on this host")
def test_rolling_on_a_host_with_only_compose_v1_is_refused_before_changing_anything(stack, healthy, without_compose_v2):
    before = stack.container("backend").id
    # Values docker-compose v1 can carry: the canaries' quoting would stop preflight first.
    plain = {key: "redis://:plain@redis:6379/0" if key.endswith(("_URL", "_BACKEND")) else f"plain{key}" for key in stack.secrets}
    run = stack.playbook("remediate.yml", stack.vars_file(i2m_env_secrets=plain, i2m_remediate_strategy="rolling",
                                                          i2m_compose_files=ROLLING_FILES), env=without_compose_v2)
    assert run.returncode != 0
    # The rolling override resets container_name with !reset, which only compose v2 reads.
    assert "docker-compose v1 cannot read compose v2 features" in run.output, run.output[-3000:]
    assert "install the compose v2 plugin" in run.output
    assert "Take the stack's lock" not in run.output
    assert stack.container("backend").id == before


def nginx_workers(stack) -> set:
    """PIDs of nginx's worker processes: a reload replaces them all."""
    top = stack.container("nginx").top()
    pid, command = top["Titles"].index("PID"), top["Titles"].index("CMD")
    return {process[pid] for process in top["Processes"] if "worker process" in process[command]}


def test_rolling_remediation_fails_no_request(stack, healthy):
    """nginx resolves the backend only when it starts or reloads (production's config): the
    rolling strategy reloads it when the new backend is healthy and when the old is gone."""
    assert stack.playbook("deploy.yml", stack.vars_file(i2m_compose_files=ROLLING_FILES)).returncode == 0
    before = stack.container("backend").id
    nginx_started, workers_before = stack.container("nginx").attrs["State"]["StartedAt"], nginx_workers(stack)
    prober = Prober(stack.nginx_url(), stack.secrets["API_KEY"], rate=20)
    prober.start()
    run = stack.playbook("remediate.yml", stack.vars_file(i2m_compose_files=ROLLING_FILES, i2m_remediate_strategy="rolling"))
    downtime = prober.stop()
    assert run.returncode == 0, run.output[-3000:]
    # nginx passes every failed GET to the other backend, but never resends a POST it has sent:
    # an upload that reached the old backend's listen queue as it stopped listening answers 502
    # (roles/compose/README.md). Nothing else may fail.
    assert downtime.sent > 100 and set(downtime.failures) <= {"POST 502"} and downtime.failed <= 2, downtime
    [backend] = stack.containers("backend")
    assert backend.id != before and backend.status == "running"
    assert stack.container("nginx").attrs["State"]["StartedAt"] == nginx_started, "nginx was restarted, not reloaded"
    assert nginx_workers(stack).isdisjoint(workers_before), "nginx's workers are those of before: it was not reloaded"
    assert_previous_version_healthy_with_its_data(stack, healthy)


def test_audit_log_records_every_remediation(stack, healthy):
    lines = (stack.project_dir / ".i2m-audit.log").read_text().splitlines()
    results = [line.split(" result=", 1)[1] for line in lines]
    assert results.count("ok (build-first)") >= 2 and "ok (rolling)" in results
    assert "failed, rolled back (report)" in results and results.count("failed, rolled back (build-first)") >= 3


def test_no_canary_in_any_output(stack):
    assert len(stack.outputs) >= 10
    assert canary_hits("\n".join(stack.outputs), stack.secrets) == []
