"""The rendered env file on each instance: its mode and owner, and every value read back
exactly by the real compose reader (the host's `docker compose`), compared by fingerprint."""

import hashlib
import json
import pathlib
import subprocess

import pytest
import yaml

SCENARIO = yaml.safe_load((pathlib.Path(__file__).parents[1] / "vars.yml").read_text())
EXPECTED = {**SCENARIO["env_file_values"], **SCENARIO["env_file_secrets"]}


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.fixture(scope="module")
def read_back(host, tmp_path_factory):
    """The instance's env file, as `docker compose` interpolates it into a service's environment."""
    folder = tmp_path_factory.mktemp("env-file")
    (folder / "env").write_text(host.file(SCENARIO["env_file_path"]).content_string)
    (folder / "compose.yml").write_text(yaml.safe_dump(
        {"services": {"probe": {"image": "i2m-base:trixie", "environment": [f"{key}=${{{key}}}" for key in EXPECTED]}}}))
    done = subprocess.run(["docker", "compose", "-p", "i2m-env-file-probe", "-f", str(folder / "compose.yml"),
                           "--env-file", str(folder / "env"), "config", "--format", "json"], capture_output=True, text=True)
    assert done.returncode == 0, "docker compose could not read the rendered env file"
    environment = json.loads(done.stdout)["services"]["probe"]["environment"]
    return {key: (value or "").replace("$$", "$") for key, value in environment.items()}


def test_env_file_is_private(host):
    env_file = host.file(SCENARIO["env_file_path"])
    assert env_file.mode == 0o600
    assert env_file.user == "root" and env_file.group == "root"


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_compose_reads_the_value_back_exactly(read_back, key):
    assert fingerprint(read_back[key]) == fingerprint(EXPECTED[key])


def test_one_line_per_key_and_a_managed_header(host):
    lines = host.file(SCENARIO["env_file_path"]).content_string.splitlines()
    assert lines[0].startswith("# ")
    assert sorted(line.split("=", 1)[0] for line in lines if not line.startswith("#")) == sorted(EXPECTED)
