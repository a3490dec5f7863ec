"""The project's own standards: ansible-lint (production profile) and yamllint pass."""

import subprocess

from conftest import REPO, VENV_BIN


def test_ansible_lint_production_profile():
    run = subprocess.run([str(VENV_BIN / "ansible-lint"), "--profile", "production", "--offline", "-q", "--nocolor"],
                         cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


def test_yamllint():
    run = subprocess.run([str(VENV_BIN / "yamllint"), "--strict", "."], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-4000:]
