"""A stack host reached over SSH for the tests: the image of tests/sshhost, started on this
machine's network with its engine's socket, a key made for the test run, and known_hosts filled
as the README tells an operator to (ssh-keyscan, once, before the first run)."""

import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker

IMAGE = "i2m-sshhost:trixie"
LABEL = "io.i2m.test.sshhost"
BUILD_DIR = Path(__file__).resolve().parent


@dataclass
class SshHost:
    container: str
    port: int
    key: Path = field(repr=False)
    known_hosts: Path

    def exec(self, *command: str) -> str:
        """Runs a command as root in the host's container: its output (a CalledProcessError when it fails)."""
        return subprocess.run(["docker", "exec", self.container, *command], check=True, capture_output=True, text=True).stdout


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on at the time of the call."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(name: str, folder: Path, stack_dir: Path) -> SshHost:
    """Builds the image (from i2m-base:trixie, the build cache makes a second build take seconds),
    makes an ed25519 key in folder, starts the container NAME with the stack folder mounted at
    the same path, and returns once its sshd answers. Raises docker.errors.BuildError or
    TimeoutError."""
    client = docker.from_env()
    client.images.build(path=str(BUILD_DIR), tag=IMAGE, labels={LABEL: "image"}, rm=True, forcerm=True)
    key = folder / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    port = free_port()
    client.containers.run(IMAGE, [str(port)], name=name, labels={LABEL: name}, network_mode="host", detach=True,
                          volumes={"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
                                   str(stack_dir): {"bind": str(stack_dir), "mode": "rw"},
                                   f"{key}.pub": {"bind": "/run/i2m/key.pub", "mode": "ro"}})
    known_hosts = folder / "known_hosts"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        scanned = subprocess.run(["ssh-keyscan", "-p", str(port), "127.0.0.1"], capture_output=True, text=True)
        if scanned.stdout.strip():
            known_hosts.write_text(scanned.stdout)
            return SshHost(container=name, port=port, key=key, known_hosts=known_hosts)
        time.sleep(0.5)
    raise TimeoutError(f"sshd in {name} did not answer on port {port} within 60 s")


def remove(name: str) -> None:
    """Removes the container NAME started by start() (selected by its label too), nothing else."""
    for container in docker.from_env().containers.list(all=True, filters={"label": f"{LABEL}={name}"}):
        container.remove(force=True)
