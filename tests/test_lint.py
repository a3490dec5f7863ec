"""The project's own standards: ansible-lint (production profile) and yamllint pass."""

import json
import subprocess

from conftest import REPO, VENV_BIN


def test_ansible_lint_production_profile():
    run = subprocess.run([str(VENV_BIN / "ansible-lint"), "--profile", "production", "--offline", "-q", "--nocolor"],
                         cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


def test_yamllint():
    run = subprocess.run([str(VENV_BIN / "yamllint"), "--strict", "."], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-4000:]


def test_production_example_inventory_parses_with_its_vault_example(tmp_path):
    """Read only: nothing connects to the example's documentation address."""
    example = REPO / "inventory" / "production.example"
    run = subprocess.run([str(VENV_BIN / "ansible-inventory"), "-i", str(example), "--list",
                          "-e", f"@{example / 'group_vars' / 'all' / 'vault.yml.example'}"],
                         cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    inventory = json.loads(run.stdout)
    assert inventory["i2m_stack"]["hosts"] == ["image2model-prod"]
    host = inventory["_meta"]["hostvars"]["image2model-prod"]
    assert host["i2m_project_dir"] == "/opt/image2model" and host["i2m_compose_files"] == ["docker-compose.prod.yml"]
    assert set(host["i2m_env_required_keys"]) <= set(host["i2m_env"]) | set(host["i2m_env_secrets"])
