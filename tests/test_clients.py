"""The playbooks as the clients operators really use run them, on a stand-in stack of this
module's own: plain ansible-playbook from another working directory (cron, CI runners)."""

import os
import subprocess

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


@pytest.fixture(scope="module")
def deployed(stack):
    run = stack.playbook("deploy.yml")
    assert run.returncode == 0, run.output[-3000:]
    return stack


def test_verify_runs_by_absolute_path_from_another_working_directory(deployed, tmp_path):
    elsewhere = tmp_path / "cron-job"
    elsewhere.mkdir()
    before = untracked_files()
    done = subprocess.run([str(VENV_BIN / "ansible-playbook"), str(REPO / "playbooks" / "verify.yml"),
                           "-i", str(deployed.inventory), "-e", f"@{deployed.vars_file()}"],
                          cwd=elsewhere, env=environment_without_the_repo_settings(), capture_output=True, text=True,
                          timeout=600)
    output = done.stdout + done.stderr
    assert not canary_hits(output, deployed.secrets)
    assert done.returncode == 0, output[-3000:]
    assert "TASK [verify : Probe the endpoints, direct and through nginx]" in output
    assert list(elsewhere.iterdir()) == [] and untracked_files() == before


def test_ansible_navigator_runs_a_playbook_with_the_shipped_settings_leaving_no_file(deployed):
    """ansible-navigator started in the repo reads ansible-navigator.yml: no execution environment,
    stdout, no playbook artifact, no log file."""
    before = untracked_files()
    done = subprocess.run([str(VENV_BIN / "ansible-navigator"), "run", "playbooks/verify.yml", "-i", str(deployed.inventory),
                           "-e", f"@{deployed.vars_file()}"],
                          cwd=REPO, env={**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"},
                          capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert not canary_hits(output, deployed.secrets)
    assert done.returncode == 0, output[-3000:]
    assert "TASK [verify : Probe the endpoints, direct and through nginx]" in output
    assert untracked_files() == before and not list(REPO.glob("**/*-artifact-*.json"))
