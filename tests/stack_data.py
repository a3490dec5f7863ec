"""Data in a stand-in stack's volumes, written before a change and read after it: a remediation
never removes a volume. Also the shell of the stack's containers, for the tests that need one."""

import subprocess

import pytest

# A file of its own in every named volume that a service writes to (redis and postgres by their
# own means), checked after each remediation: remediation never removes a volume.
VOLUME_FILES = [("backend", "/app/uploads/i2m-marker"), ("backend", "/app/results/i2m-marker"),
                ("backend", "/app/models/i2m-marker"), ("nginx", "/var/log/nginx/i2m-marker")]


def run_in(stack, service: str, *argv: str, environment: dict | None = None, user: str = "") -> str:
    result = stack.container(service).exec_run(list(argv), environment=environment, user=user)
    assert result.exit_code == 0, f"{argv[0]} in {service} failed"
    return result.output.decode().strip()


def redis_command(stack, *args: str, password: str | None = None) -> str:
    # The password travels in the exec's environment, not its arguments.
    return run_in(stack, "redis", "redis-cli", *args, environment={"REDISCLI_AUTH": password or stack.secrets["REDIS_PASSWORD"]})


def psql(stack, sql: str) -> str:
    return run_in(stack, "postgres", "psql", "-U", "image2model", "-d", "image2model", "-tAc", sql)


def wait_healthy(stack, service: str) -> None:
    for _ in range(60):
        container = stack.container(service)
        if container.attrs["State"].get("Health", {}).get("Status") == "healthy":
            return
        subprocess.run(["sleep", "1"], check=True)
    pytest.fail(f"{service} did not become healthy")


def write_markers(stack) -> dict:
    """Data written before any change: a redis key, a postgres row, a file in each of the other
    named volumes, and an uploaded file (its job id is returned)."""
    redis_command(stack, "SET", "i2m:test:marker", "written-before")
    psql(stack, "CREATE TABLE i2m_marker (note text); INSERT INTO i2m_marker VALUES ('written-before')")
    for service, path in VOLUME_FILES:
        run_in(stack, service, "sh", "-c", f"echo written-before > {path}")
    response = stack.upload(stack.secrets["API_KEY"])
    assert response.status_code == 200, f"marker upload answered {response.status_code}"
    return {"job_id": response.json()["job_id"]}


def assert_markers(stack, markers: dict, redis_password: str | None = None) -> None:
    """Everything write_markers wrote is still there (redis_password: redis's, if it changed since)."""
    found = redis_command(stack, "GET", "i2m:test:marker", password=redis_password)
    assert found == "written-before", f"redis holds {found!r}"
    found = psql(stack, "SELECT note FROM i2m_marker")
    assert found == "written-before", f"postgres holds {found!r}"
    for service, path in VOLUME_FILES:
        found = run_in(stack, service, "cat", path)
        assert found == "written-before", f"{path} in {service} holds {found!r}"
    backend = stack.container("backend")
    folder = f"/app/uploads/{markers['job_id']}"
    found = run_in(stack, "backend", "ls", "-a", folder).split()
    assert found == [".", "..", "marker.png"], (
        f"{folder} in {backend.name} (image {backend.image.id[:19]}; {len(stack.containers('backend'))} backend container(s)) "
        f"holds {found}; /app/uploads holds {run_in(stack, 'backend', 'ls', '-la', '/app/uploads')}")
