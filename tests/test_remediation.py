"""The report's runbook, run for real on a stand-in stack of this module's own.

Tests run in file order and share the stack: deploy, write data, break it as in the report,
remediate, then check the data and the refusals of bad input.
"""

import hashlib
import os
import subprocess

import pytest
import requests
import yaml
from canary import canary_hits
from conftest import REPO


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def container_env(container) -> dict:
    return dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])


def nginx_url(stack) -> str:
    nginx = stack.container("nginx")
    binding = nginx.attrs["NetworkSettings"]["Ports"]["80/tcp"][0]
    return f"http://127.0.0.1:{binding['HostPort']}"


def upload(stack, api_key: str) -> requests.Response:
    return requests.post(f"{nginx_url(stack)}/api/v1/upload/", headers={"Authorization": f"Bearer {api_key}"},
                         files={"files": ("marker.png", b"uploaded before remediation", "image/png")}, timeout=10)


def redis_command(stack, *args: str) -> str:
    # The password travels in the exec's environment, not its arguments.
    result = stack.container("redis").exec_run(["redis-cli", *args], environment={"REDISCLI_AUTH": stack.secrets["REDIS_PASSWORD"]})
    assert result.exit_code == 0, f"redis-cli {args[0]} failed"
    return result.output.decode().strip()


def wait_healthy(stack, service: str) -> None:
    for _ in range(60):
        container = stack.container(service)
        if container.attrs["State"].get("Health", {}).get("Status") == "healthy":
            return
        subprocess.run(["sleep", "1"], check=True)
    pytest.fail(f"{service} did not become healthy")


@pytest.fixture(scope="module")
def markers(stack):
    """Data written before any remediation: a redis key and an uploaded file."""
    redis_command(stack, "SET", "i2m:test:marker", "written-before")
    response = upload(stack, stack.secrets["API_KEY"])
    assert response.status_code == 200, f"marker upload answered {response.status_code}"
    return {"job_id": response.json()["job_id"]}


def test_deploy_twice_second_run_changes_nothing(stack):
    first = stack.playbook("deploy.yml")
    assert first.returncode == 0, first.output[-3000:]
    second = stack.playbook("deploy.yml")
    assert second.returncode == 0, second.output[-3000:]
    assert second.recap_counts()["changed"] == 0


@pytest.mark.parametrize("service", ["backend", "worker"])
@pytest.mark.parametrize("key", ["API_KEY", "ADMIN_API_KEY"])
def test_secret_with_special_characters_reaches_container_byte_for_byte(stack, service, key):
    env = container_env(stack.container(service))
    assert key in env, f"{key} missing in {service}"
    assert fingerprint(env[key]) == fingerprint(stack.secrets[key])


def test_env_file_is_private(stack):
    env_file = stack.project_dir / ".env.production"
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"


def test_report_failure_reproduced_then_remediated(stack, markers):
    # The report's stale containers: backend and worker recreated without --env-file.
    environment = {key: value for key, value in os.environ.items() if key not in stack.secrets}
    subprocess.run(["docker", "compose", "-p", stack.name, "-f", "docker-compose.prod.yml",
                    "up", "-d", "--force-recreate", "--no-deps", "backend", "worker"],
                   cwd=stack.project_dir, env=environment, check=True, capture_output=True)
    wait_healthy(stack, "backend")
    assert container_env(stack.container("worker"))["API_KEY"] == ""

    broken = upload(stack, stack.secrets["API_KEY"])
    assert broken.status_code == 500 and "API key not configured" in broken.text

    failed = stack.playbook("verify.yml")
    assert failed.returncode != 0
    for line in ["❌ backend env API_KEY: empty", "❌ worker env API_KEY: empty",
                 "❌ nginx http via nginx upload with API key: answered 500"]:
        assert line in failed.output

    remediated = stack.playbook("remediate.yml", stack.vars_file(i2m_remediate_strategy="report"))
    assert remediated.returncode == 0, remediated.output[-3000:]
    for task in ["Stop and remove the stack's containers", "Rebuild without the build cache", "Start the stack"]:
        assert task in remediated.output

    verified = stack.playbook("verify.yml")
    assert verified.returncode == 0, verified.output[-3000:]
    assert "✅ backend env API_KEY: match" in verified.output
    assert "✅ worker env API_KEY: match" in verified.output
    assert upload(stack, stack.secrets["API_KEY"]).status_code == 200


def test_data_written_before_remediation_is_still_there(stack, markers):
    assert redis_command(stack, "GET", "i2m:test:marker") == "written-before"
    listing = stack.container("backend").exec_run(["ls", f"/data/uploads/{markers['job_id']}"])
    assert listing.output.decode().split() == ["marker.png"]


def running_containers(stack) -> dict:
    return {service: stack.container(service).attrs["State"]["StartedAt"] for service in ["backend", "worker", "redis", "nginx"]}


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
