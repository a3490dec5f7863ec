"""The deployed and remediated stand-in stack, as testinfra sees it on this machine.

What is checked comes from `docker compose config`, which resolves the compose files with the
env file exactly as compose does when it starts the containers: every service, every entry of
its environment, every named volume. Values are compared by fingerprint only.
"""

import hashlib
import json
import os
import subprocess

import pytest
import requests
import urllib3

PROJECT = os.environ["I2M_PROJECT"]
PROJECT_DIR = os.environ["I2M_PROJECT_DIR"]
# The stand-in's nginx serves https with a self-signed certificate.
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


def compose_config() -> dict:
    command = ["docker", "compose", "-p", PROJECT, "--project-directory", PROJECT_DIR, "-f", f"{PROJECT_DIR}/docker-compose.prod.yml",
               "--env-file", f"{PROJECT_DIR}/.env.production", "config", "--format", "json"]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, "docker compose config failed"
    return json.loads(done.stdout)


CONFIG = compose_config()
SERVICES = sorted(CONFIG["services"])
ENV_ENTRIES = [(service, key) for service in SERVICES for key in sorted(CONFIG["services"][service].get("environment") or {})]


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def container(host, service):
    return host.docker(CONFIG["services"][service]["container_name"])


def container_env(host, service) -> dict:
    return dict(item.split("=", 1) for item in container(host, service).inspect()["Config"]["Env"])


def intended(service, key) -> str:
    # compose config writes a literal $ as $$
    return CONFIG["services"][service]["environment"][key].replace("$$", "$")


def address(host, service, network) -> str:
    return container(host, service).inspect()["NetworkSettings"]["Networks"][CONFIG["networks"][network]["name"]]["IPAddress"]


def nginx_base(host) -> str:
    binding = container(host, "nginx").inspect()["NetworkSettings"]["Ports"]["443/tcp"][0]
    return f"https://127.0.0.1:{binding['HostPort']}"


@pytest.mark.parametrize("service", SERVICES)
def test_service_is_running_and_healthy(host, service):
    state = container(host, service).inspect()["State"]
    assert state["Running"] and state["Health"]["Status"] == "healthy"


def test_env_file_is_private_and_owned_by_the_deploying_user(host):
    env_file = host.file(f"{PROJECT_DIR}/.env.production")
    assert env_file.is_file
    assert env_file.mode == 0o600
    assert env_file.user == host.user().name


@pytest.mark.parametrize("service, key", ENV_ENTRIES)
def test_container_env_matches_the_compose_config(host, service, key):
    assert fingerprint(container_env(host, service)[key]) == fingerprint(intended(service, key))


@pytest.mark.parametrize("path", ["/health", "/api/v1/health/"])
def test_backend_answers_direct(host, path):
    assert requests.get(f"http://{address(host, 'backend', 'frontend-network')}:8000{path}", timeout=10).status_code == 200


@pytest.mark.parametrize("path", ["/health", "/api/v1/health/"])
def test_nginx_answers_over_https(host, path):
    assert requests.get(f"{nginx_base(host)}{path}", timeout=10, verify=False).status_code == 200


def test_upload_through_nginx_needs_the_api_key(host):
    files = {"files": ("probe.png", b"probe", "image/png")}
    url = f"{nginx_base(host)}/api/v1/upload/"
    assert requests.post(url, files=files, timeout=10, verify=False).status_code == 401
    authorized = requests.post(url, files=files, timeout=10, verify=False,
                               headers={"Authorization": f"Bearer {intended('backend', 'API_KEY')}"})
    assert authorized.status_code == 200


@pytest.mark.parametrize("volume", sorted(CONFIG["volumes"]))
def test_named_volume_exists(host, volume):
    assert host.run(f"docker volume inspect {CONFIG['volumes'][volume]['name']}").rc == 0
