"""The deployed and remediated stand-in stack, as testinfra sees it on this machine.

Intended values come from `docker compose config`, which reads the env file exactly as compose
does when it starts the containers; values are compared by fingerprint only.
"""

import hashlib
import json
import os

import pytest
import requests

PROJECT = os.environ["I2M_PROJECT"]
PROJECT_DIR = os.environ["I2M_PROJECT_DIR"]
SERVICES_WITH_HEALTHCHECK = ["backend", "redis", "nginx"]
ENV_KEYS = [("backend", "API_KEY"), ("backend", "ADMIN_API_KEY"), ("backend", "REDIS_URL"), ("backend", "SECRET_KEY"),
            ("worker", "API_KEY"), ("worker", "REDIS_URL"), ("redis", "REDIS_PASSWORD"), ("nginx", "BACKEND_HOST")]


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.fixture(scope="module")
def compose_config(host):
    command = host.run(f"docker compose -p {PROJECT} --project-directory {PROJECT_DIR} -f {PROJECT_DIR}/docker-compose.prod.yml "
                       f"--env-file {PROJECT_DIR}/.env.production config --format json")
    assert command.rc == 0, "docker compose config failed"
    return json.loads(command.stdout)


def container(host, service):
    return host.docker(f"{PROJECT}-{service}")


def container_env(host, service) -> dict:
    return dict(item.split("=", 1) for item in container(host, service).inspect()["Config"]["Env"])


def address(host, service, network) -> str:
    return container(host, service).inspect()["NetworkSettings"]["Networks"][f"{PROJECT}-{network}"]["IPAddress"]


def nginx_base(host) -> str:
    binding = container(host, "nginx").inspect()["NetworkSettings"]["Ports"]["80/tcp"][0]
    return f"http://127.0.0.1:{binding['HostPort']}"


@pytest.mark.parametrize("service", ["backend", "worker", "redis", "nginx"])
def test_service_is_running(host, service):
    assert container(host, service).is_running


@pytest.mark.parametrize("service", SERVICES_WITH_HEALTHCHECK)
def test_service_is_healthy(host, service):
    assert container(host, service).inspect()["State"]["Health"]["Status"] == "healthy"


def test_env_file_is_private_and_owned_by_the_deploying_user(host):
    env_file = host.file(f"{PROJECT_DIR}/.env.production")
    assert env_file.is_file
    assert env_file.mode == 0o600
    assert env_file.user == host.user().name


@pytest.mark.parametrize("service, key", ENV_KEYS)
def test_container_env_matches_the_env_file(host, compose_config, service, key):
    intended = compose_config["services"][service]["environment"][key].replace("$$", "$")
    assert fingerprint(container_env(host, service)[key]) == fingerprint(intended)


@pytest.mark.parametrize("path", ["/health", "/api/v1/health/"])
def test_backend_answers_direct(host, path):
    assert requests.get(f"http://{address(host, 'backend', 'backend-network')}:8000{path}", timeout=10).status_code == 200


@pytest.mark.parametrize("path", ["/health", "/api/v1/health/"])
def test_nginx_answers(host, path):
    assert requests.get(f"{nginx_base(host)}{path}", timeout=10).status_code == 200


def test_upload_through_nginx_needs_the_api_key(host, compose_config):
    api_key = compose_config["services"]["backend"]["environment"]["API_KEY"].replace("$$", "$")
    files = {"files": ("probe.png", b"probe", "image/png")}
    assert requests.post(f"{nginx_base(host)}/api/v1/upload/", files=files, timeout=10).status_code == 401
    authorized = requests.post(f"{nginx_base(host)}/api/v1/upload/", files=files, timeout=10,
                               headers={"Authorization": f"Bearer {api_key}"})
    assert authorized.status_code == 200


@pytest.mark.parametrize("volume", ["redis-data", "uploads"])
def test_named_volume_exists(host, volume):
    assert host.run(f"docker volume inspect {PROJECT}-{volume}").rc == 0
