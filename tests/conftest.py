"""Shared fixtures: a stand-in stack of its own per test module, canary secrets, real runs.

Every stack gets its own compose project name (i2mt-<random>), so tests never touch a stack
they did not create; cleanup removes by that project's labels only.
"""

import os
import re
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest
import yaml
from canary import canary_hits, canary_secrets

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"
PROJECT_LABEL = "com.docker.compose.project"


@dataclass
class Run:
    returncode: int
    output: str

    def recap_counts(self) -> dict:
        match = re.search(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", self.output)
        assert match, "no PLAY RECAP in the output"
        return dict(zip(["ok", "changed", "unreachable", "failed"], map(int, match.groups())))


@dataclass
class Stack:
    name: str
    project_dir: Path
    vars_dir: Path
    # Never in a repr: pytest prints fixtures' reprs in failure messages.
    secrets: dict = field(repr=False)
    outputs: list = field(default_factory=list, repr=False)

    def vars_file(self, **overrides) -> Path:
        """An extra-vars file (mode 0600) naming this stack, with its secrets and any overrides."""
        data = {"i2m_compose_project": self.name, "i2m_project_dir": str(self.project_dir), "i2m_env_secrets": self.secrets}
        data.update(overrides)
        path = self.vars_dir / f"vars-{len(list(self.vars_dir.iterdir()))}.yml"
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(data))
        return path

    def playbook(self, name: str, vars_file: Path | None = None, env: dict | None = None) -> Run:
        """Runs a playbook for real against this stack (env: extra environment variables); fails
        the test if a canary leaks."""
        command = [str(VENV_BIN / "ansible-playbook"), f"playbooks/{name}", "-i", "inventory/local",
                   "-e", f"@{vars_file or self.vars_file()}"]
        env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", **(env or {})}
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        run = Run(done.returncode, done.stdout + done.stderr)
        self.outputs.append(run.output)
        leaked = canary_hits(run.output, self.secrets)
        assert not leaked, f"{name} printed the secret value of {leaked}"
        return run

    def containers(self, service: str) -> list:
        return docker.from_env().containers.list(all=True, filters={"label": [f"{PROJECT_LABEL}={self.name}",
                                                                             f"com.docker.compose.service={service}"]})

    def container(self, service: str):
        found = self.containers(service)
        assert found, f"no container for service {service} in {self.name}"
        return found[0]


def remove_stack_resources(name: str) -> None:
    """Removes what compose made for one test project, selected by its labels, nothing else."""
    client = docker.from_env()
    for container in client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={name}"}):
        container.remove(force=True)
    for network in client.networks.list(filters={"label": f"{PROJECT_LABEL}={name}"}):
        network.remove()
    for volume in client.volumes.list(filters={"label": f"{PROJECT_LABEL}={name}"}):
        volume.remove(force=True)
    for image in client.images.list(filters={"label": f"io.i2m.stack={name}"}):
        client.images.remove(image.id, force=True)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    run_id = secrets.token_hex(4)
    name = f"i2mt-{run_id}"
    root = tmp_path_factory.mktemp(name)
    (root / "vars").mkdir(mode=0o700)
    created = Stack(name=name, project_dir=root / "stack", vars_dir=root / "vars", secrets=canary_secrets(run_id))
    yield created
    remove_stack_resources(name)
