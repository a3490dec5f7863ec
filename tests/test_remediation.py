"""The report's runbook, run for real on a stand-in stack of this module's own.

Tests run in file order and share the stack: deploy, write data, break it as in the report,
remediate, then check the data and the refusals of bad input.
"""

import hashlib
import socket

import docker
import pytest
import yaml
from canary import canary_hits
from conftest import REPO
from stack_data import assert_markers, wait_healthy, write_markers


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def container_env(container) -> dict:
    return dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])


@pytest.fixture(scope="module")
def markers(stack):
    return write_markers(stack)


def test_deploy_twice_second_run_changes_nothing(stack):
    first = stack.playbook("deploy.yml")
    assert first.returncode == 0, first.output[-3000:]
    second = stack.playbook("deploy.yml")
    assert second.returncode == 0, second.output[-3000:]
    assert second.recap_counts()["changed"] == 0


def test_the_shell_environment_never_beats_the_env_file(stack):
    # compose prefers its process environment to --env-file, and the local connection hands the
    # controller's environment down: a deploy from a shell holding other values changes nothing.
    rate_limit = yaml.safe_load((REPO / "inventory/local/group_vars/all/env.yml").read_text())["i2m_env"]["RATE_LIMIT_PER_MINUTE"]
    run = stack.playbook("deploy.yml", env={"RATE_LIMIT_PER_MINUTE": "5", "API_KEY": "i2m-from-the-shell"})
    assert run.returncode == 0, run.output[-3000:]
    assert run.recap_counts()["changed"] == 0
    backend = container_env(stack.container("backend"))
    assert backend["RATE_LIMIT_PER_MINUTE"] == rate_limit
    assert fingerprint(backend["API_KEY"]) == fingerprint(stack.secrets["API_KEY"])


def test_the_shell_environment_never_beats_a_default_of_the_compose_file(stack):
    # ${NGINX_HTTP_PORT:-} has a default: with the key out of the env file, compose takes the
    # default, whatever the operator's shell holds.
    env = yaml.safe_load((REPO / "inventory/local/group_vars/all/env.yml").read_text())["i2m_env"]
    nginx = stack.container("nginx")
    shell_port = str(free_port())
    without = stack.vars_file(i2m_env={key: value for key, value in env.items() if key != "NGINX_HTTP_PORT"})
    run = stack.playbook("deploy.yml", without, env={"NGINX_HTTP_PORT": shell_port})
    assert run.returncode == 0, run.output[-3000:]
    assert stack.container("nginx").id == nginx.id
    assert stack.container("nginx").attrs["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"] != shell_port
    assert stack.playbook("deploy.yml").returncode == 0


@pytest.mark.parametrize("service, key", [("backend", "API_KEY"), ("backend", "ADMIN_API_KEY"), ("frontend", "API_KEY"),
                                          ("postgres", "POSTGRES_PASSWORD"), ("worker", "DATABASE_URL")])
def test_secret_with_special_characters_reaches_container_byte_for_byte(stack, service, key):
    env = container_env(stack.container(service))
    assert key in env, f"{key} missing in {service}"
    assert fingerprint(env[key]) == fingerprint(stack.secrets[key])


def test_env_file_is_private(stack):
    env_file = stack.project_dir / ".env.production"
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"


def test_report_failure_reproduced_then_remediated(stack, markers):
    # The report's stale containers: backend and worker recreated without --env-file.
    stack.compose("up", "-d", "--force-recreate", "--no-deps", "backend", "worker", with_env_file=False)
    wait_healthy(stack, "backend")
    assert container_env(stack.container("backend"))["API_KEY"] == ""

    broken = stack.upload(stack.secrets["API_KEY"])
    assert broken.status_code == 500 and "API key not configured" in broken.text

    failed = stack.playbook("verify.yml")
    assert failed.returncode != 0
    for line in ["❌ backend env API_KEY: empty", "❌ worker env FAL_API_KEY: empty",
                 "❌ nginx http via nginx upload with API key: answered 500"]:
        assert line in failed.output
    # The worker has no API_KEY in the compose file: nothing to check, nothing to report.
    assert "worker env API_KEY" not in failed.output

    code, document = stack.cli("drift")
    drifted = {(item["service"], item["item"], item["state"]) for item in document["drift"]["localhost"] if not item["ok"]}
    assert code == 2 and ("backend", "API_KEY", "empty") in drifted

    remediated = stack.playbook("remediate.yml", stack.vars_file(i2m_remediate_strategy="report"))
    assert remediated.returncode == 0, remediated.output[-3000:]
    for task in ["Stop and remove the stack's containers", "Rebuild without the build cache", "Start the stack"]:
        assert task in remediated.output

    verified = stack.playbook("verify.yml")
    assert verified.returncode == 0, verified.output[-3000:]
    assert "✅ backend env API_KEY: match" in verified.output
    assert "✅ frontend env API_KEY: match" in verified.output
    assert stack.upload(stack.secrets["API_KEY"]).status_code == 200


def test_data_written_before_remediation_is_still_there(stack, markers):
    assert_markers(stack, markers)


@pytest.mark.parametrize("strategy", ["build-first", "report"])
def test_backend_recreated_at_a_new_address_is_reached_through_nginx_after_remediation(stack, strategy):
    """nginx resolved `backend` when it started (no resolver, as in production): a backend
    recreated at another address answers 502 through nginx until the tool reloads nginx."""
    network = f"{stack.name}-frontend-network"
    old_address = stack.container("backend").attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
    stack.compose("rm", "--stop", "--force", "backend")
    # Another container takes the old address, so that the backend gets a new one; it refuses
    # nginx's connections at once (a vanished address would take nginx's 60 s connect timeout).
    squatter = docker.from_env().containers.run("i2m-base:trixie", ["sleep", "infinity"], detach=True, network=network,
                                                name=f"{stack.name}-squatter", labels={"io.i2m.test": stack.name})
    try:
        squatter.reload()
        assert squatter.attrs["NetworkSettings"]["Networks"][network]["IPAddress"] == old_address
        stack.compose("up", "-d", "--no-deps", "backend")
        wait_healthy(stack, "backend")
        assert stack.container("backend").attrs["NetworkSettings"]["Networks"][network]["IPAddress"] != old_address
        assert stack.upload(stack.secrets["API_KEY"]).status_code == 502
    finally:
        squatter.remove(force=True)

    run = stack.playbook("remediate.yml", stack.vars_file(i2m_remediate_strategy=strategy))
    assert run.returncode == 0, run.output[-3000:]
    assert "Reload the proxy" in run.output
    assert stack.upload(stack.secrets["API_KEY"]).status_code == 200


def running_containers(stack) -> dict:
    return {service: stack.container(service).attrs["State"]["StartedAt"]
            for service in ["postgres", "redis", "backend", "worker", "worker-model", "flower", "frontend", "nginx"]}


@pytest.mark.parametrize("secrets_change, message", [
    ({"API_KEY": ""}, "API_KEY is required but empty"),
    ({"API_KEY": None}, "API_KEY is required but not set"),
])
def test_missing_or_empty_secret_stops_before_down(stack, secrets_change, message):
    secrets = {key: value for key, value in {**stack.secrets, **secrets_change}.items() if value is not None}
    before = running_containers(stack)
    env_before = (stack.project_dir / ".env.production").read_bytes()
    run = stack.playbook("remediate.yml", stack.vars_file(i2m_env_secrets=secrets))
    assert run.returncode != 0
    assert message in run.output
    assert "Stop and remove the stack's containers" not in run.output
    assert running_containers(stack) == before
    assert (stack.project_dir / ".env.production").read_bytes() == env_before


def test_glued_assignment_is_refused_and_env_file_kept(stack):
    env_before = (stack.project_dir / ".env.production").read_bytes()
    inventory_env = yaml.safe_load((REPO / "inventory/local/group_vars/all/env.yml").read_text())["i2m_env"]
    glued = {**inventory_env, "COMPOSE_PROJECT_NAME": stack.name,
             "PUBLIC_API_URL": "https://example.test/api/v1BACKEND_HOST=backend"}
    run = stack.playbook("deploy.yml", stack.vars_file(i2m_env=glued))
    assert run.returncode != 0
    assert "PUBLIC_API_URL has another assignment glued on (BACKEND_HOST=...)" in run.output
    assert (stack.project_dir / ".env.production").read_bytes() == env_before


def test_no_canary_in_any_captured_output(stack):
    assert len(stack.outputs) >= 8
    assert canary_hits("\n".join(stack.outputs), stack.secrets) == []
