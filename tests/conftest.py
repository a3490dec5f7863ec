"""Shared fixtures: a stand-in stack of its own per test module, canary secrets, real runs.

Every stack gets its own compose project name (i2mt-<random>), so tests never touch a stack
they did not create; cleanup removes by that project's labels only.
"""

import json
import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest
import requests
import urllib3
import yaml
from canary import canary_hits, canary_secrets

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"
PROJECT_LABEL = "com.docker.compose.project"
# Production's healthcheck intervals, checked every 3 s: the tests' stacks start in seconds.
QUICK_COMPOSE_FILES = ["docker-compose.prod.yml", "docker-compose.quick-health.yml"]
# The stand-in's nginx serves https with a self-signed certificate.
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


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
    # The embedded default's inventory under a folder of this stack's own, so that the CLI's
    # per-inventory lock is this stack's: test modules run side by side (pytest-xdist).
    inventory: Path
    secrets: dict = field(repr=False)
    outputs: list = field(default_factory=list, repr=False)
    compose_files: list = field(default_factory=lambda: list(QUICK_COMPOSE_FILES))
    # More variables every vars_file carries (a module's own settings)
    extra_vars: dict = field(default_factory=dict)

    def vars_file(self, **overrides) -> Path:
        """An extra-vars file (mode 0600) naming this stack, with its secrets and any overrides."""
        data = {"i2m_compose_project": self.name, "i2m_project_dir": str(self.project_dir), "i2m_env_secrets": self.secrets,
                "i2m_compose_files": self.compose_files, "i2m_repo_dir": str(REPO), **self.extra_vars}
        data.update(overrides)
        path = self.vars_dir / f"vars-{len(list(self.vars_dir.iterdir()))}.yml"
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(data))
        return path

    def playbook(self, name: str, vars_file: Path | None = None, env: dict | None = None,
                 inventory: Path | None = None) -> Run:
        """Runs a playbook for real against this stack (env: extra environment variables); fails
        the test if a canary leaks."""
        command = [str(VENV_BIN / "ansible-playbook"), f"playbooks/{name}", "-i", str(inventory or self.inventory),
                   "-e", f"@{vars_file or self.vars_file()}"]
        env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", **(env or {})}
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        return self._kept(name, Run(done.returncode, done.stdout + done.stderr))

    def cli(self, *args: str, vars_file: Path | None = None) -> tuple[int, dict]:
        """Runs `i2m-ops ARGS --json` for real against this stack: its exit code and JSON document
        ({} when it printed none); fails the test if a canary leaks."""
        done = subprocess.run([str(VENV_BIN / "i2m-ops"), *args, "--json", "-e", f"@{vars_file or self.vars_file()}"],
                              cwd=REPO, capture_output=True, text=True, timeout=900)
        self._kept(f"i2m-ops {args[0]}", Run(done.returncode, done.stdout + done.stderr))
        return done.returncode, json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}

    def _kept(self, name: str, run: Run) -> Run:
        self.outputs.append(run.output)
        leaked = canary_hits(run.output, self.secrets)
        assert not leaked, f"{name} printed the secret value of {leaked}"
        return run

    def compose(self, *args: str, with_env_file: bool = True) -> None:
        """Runs `docker compose` by hand on this stack, as an operator's shell would (the project
        name set, no secret in its environment); without the env file, interpolated values are
        empty, as in the diagnosis report's stale containers."""
        env_file = ["--env-file", ".env.production"] if with_env_file else []
        environment = {**{key: value for key, value in os.environ.items() if key not in self.secrets},
                       "COMPOSE_PROJECT_NAME": self.name}
        files = [argument for name in self.compose_files for argument in ("-f", name)]
        subprocess.run(["docker", "compose", "-p", self.name, *files, *env_file, *args],
                       cwd=self.project_dir, env=environment, check=True, capture_output=True)

    def nginx_url(self) -> str:
        """nginx's https address on the host (its port 443 is published on a free port)."""
        binding = self.container("nginx").attrs["NetworkSettings"]["Ports"]["443/tcp"][0]
        return f"https://127.0.0.1:{binding['HostPort']}"

    def upload(self, api_key: str, name: str = "marker.png", content: bytes = b"uploaded") -> requests.Response:
        """POST /api/v1/upload/ through nginx with a Bearer key, as the report's check did."""
        return requests.post(f"{self.nginx_url()}/api/v1/upload/", headers={"Authorization": f"Bearer {api_key}"},
                             files={"files": (name, content, "image/png")}, timeout=10, verify=False)

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
    # Images compose built for the project's services (named <project>-<service>)
    for image in client.images.list(filters={"reference": f"{name}-*"}):
        client.images.remove(image.id, force=True)


def local_inventory_copy(folder: Path) -> Path:
    """inventory/local's hosts and group_vars under another folder (i2m_repo_dir must then be
    given: it derives from the inventory's place)."""
    folder.mkdir()
    shutil.copy(REPO / "inventory" / "local" / "hosts.yml", folder / "hosts.yml")
    (folder / "group_vars").symlink_to(REPO / "inventory" / "local" / "group_vars")
    return folder


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A stand-in stack of the module's own; the CLI's default inventory (I2M_OPS_INVENTORY) is
    its inventory copy while the module runs."""
    run_id = secrets.token_hex(4)
    name = f"i2mt-{run_id}"
    root = tmp_path_factory.mktemp(name)
    (root / "vars").mkdir(mode=0o700)
    created = Stack(name=name, project_dir=root / "stack", vars_dir=root / "vars", inventory=local_inventory_copy(root / "inventory"),
                    secrets=canary_secrets(run_id))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("I2M_OPS_INVENTORY", str(created.inventory))
        yield created
    remove_stack_resources(name)
