"""The playbooks as the clients operators really use run them, on a stand-in stack of this
module's own: plain ansible-playbook from another working directory (cron, CI runners),
ansible-navigator, and ansible-runner's CLI (as AWX runs them: a pseudo-terminal nobody types
into). Each must end on its own, in bounded time, leaving no file in the repo."""

import os
import subprocess
from pathlib import Path

import pytest
from canary import canary_hits
from conftest import REPO, VENV_BIN


def untracked_files() -> list:
    """Files and folders in the repo that git does not track, ignored ones included (what a client
    leaves behind, such as ansible-navigator.log, is ignored but still a file in the repo)."""
    done = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=REPO, capture_output=True, text=True, check=True)
    return sorted(line[3:] for line in done.stdout.splitlines() if line.startswith(("??", "!!")))


def environment_without_the_repo_settings() -> dict:
    """The environment of a cron job or CI runner: none of the repo's Ansible settings."""
    return {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")} | {"ANSIBLE_NOCOLOR": "1"}


def with_the_venv_on_path() -> dict:
    """The clients call ansible-playbook and ansible by name: the venv's, as an activated venv would."""
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}


def client_run(stack, command: list, cwd: Path, env: dict) -> str:
    """Runs a client's command line against the stack; asserts that it ended on its own with exit 0,
    its verification ran, no canary in its output and no new file in the repo. Returns its output."""
    before = untracked_files()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert not canary_hits(output, stack.secrets)
    assert done.returncode == 0, output[-3000:]
    assert "TASK [verify : Probe every endpoint at once" in output
    assert untracked_files() == before
    return output


@pytest.fixture(scope="module")
def deployed(stack):
    run = stack.playbook("deploy.yml")
    assert run.returncode == 0, run.output[-3000:]
    return stack


def test_verify_runs_by_absolute_path_from_another_working_directory(deployed, tmp_path):
    elsewhere = tmp_path / "cron-job"
    elsewhere.mkdir()
    client_run(deployed, [str(VENV_BIN / "ansible-playbook"), str(REPO / "playbooks" / "verify.yml"),
                          "-i", str(deployed.inventory), "-e", f"@{deployed.vars_file()}"],
               elsewhere, environment_without_the_repo_settings())
    assert list(elsewhere.iterdir()) == []


def test_ansible_navigator_runs_a_playbook_with_the_shipped_settings_leaving_no_file(deployed):
    """ansible-navigator started in the repo reads ansible-navigator.yml: no execution environment,
    stdout, no playbook artifact, no log file."""
    client_run(deployed, [str(VENV_BIN / "ansible-navigator"), "run", "playbooks/verify.yml", "-i", str(deployed.inventory),
                          "-e", f"@{deployed.vars_file()}"], REPO, with_the_venv_on_path())
    assert not list(REPO.glob("**/*-artifact-*.json"))


def test_ansible_runner_cli_remediates_without_waiting_at_the_prompt(deployed, tmp_path):
    """ansible-runner gives the playbook a pseudo-terminal: the confirmation must not wait there.
    Its private data folder is outside the repo (the repo as the project folder), as the README says."""
    private = tmp_path / "runner"
    private.mkdir()
    client_run(deployed, [str(VENV_BIN / "ansible-runner"), "run", str(private), "--project-dir", str(REPO),
                          "-p", "playbooks/remediate.yml", "--inventory", str(deployed.inventory), "--omit-env-files",
                          "--cmdline", f"-e @{deployed.vars_file()}"], tmp_path, with_the_venv_on_path())


def test_ansible_navigator_remediates_without_waiting_at_the_prompt(deployed):
    client_run(deployed, [str(VENV_BIN / "ansible-navigator"), "run", "playbooks/remediate.yml", "--ee", "false",
                          "--mode", "stdout", "-i", str(deployed.inventory), "-e", f"@{deployed.vars_file()}"],
               REPO, with_the_venv_on_path())
