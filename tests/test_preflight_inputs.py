"""Preflight's stack-wide checks (roles/preflight/tasks/inventory.yml), one input of each kind of
mistake operators make, through the real `ansible-playbook playbooks/remediate.yml` on the
embedded default's inventory: each stops the run in the inputs play, names the variable and
what to set, and leaves the host as it was (no stack folder, no container). No stack is needed:
a check that let the input through would deploy one, which the test sees and removes."""

import json
import os
import secrets
import subprocess

import pytest
import yaml
from conftest import REPO, VENV_BIN, local_inventory_copy, remove_stack_resources

ENV = yaml.safe_load((REPO / "inventory/local/group_vars/all/env.yml").read_text())["i2m_env"]
INCOMPLETE = "The stack variables of localhost are incomplete"
ENV_INPUTS = "Set i2m_env (non-secret KEY: value), i2m_env_secrets"

# (case, extra vars as YAML text, what the failure must say). {project} is the run's compose project.
CASES = [
    ("a relative i2m_project_dir", "i2m_project_dir: opt/image2model\n", INCOMPLETE),
    ("i2m_compose_files as one string", "i2m_compose_files: docker-compose.prod.yml\n", INCOMPLETE),
    ("an empty i2m_compose_files", "i2m_compose_files: []\n", INCOMPLETE),
    ("an empty name in i2m_compose_files", "i2m_compose_files: [docker-compose.prod.yml, '']\n", INCOMPLETE),
    # compose's rule: https://docs.docker.com/compose/how-tos/project-name/ (lower-case letters,
    # digits, dashes and underscores, starting with a letter or digit)
    ("an upper-case i2m_compose_project", "i2m_compose_project: Image2Model\n", INCOMPLETE),
    ("i2m_compose_project with a dot", "i2m_compose_project: image2model.prod\n", INCOMPLETE),
    ("i2m_rebuild_services as one string", "i2m_rebuild_services: backend\n", INCOMPLETE),
    ("an empty i2m_env_file", "i2m_env_file: ''\n", INCOMPLETE),
    ("i2m_env as KEY=value lines", "i2m_env: [API_KEY=abc, DEBUG=false]\n", ENV_INPUTS),
    ("i2m_env_required_keys as one string", "i2m_env_required_keys: API_KEY\n", ENV_INPUTS),
    ("i2m_env.COMPOSE_PROJECT_NAME naming another project",
     "i2m_env: " + json.dumps({**ENV, "COMPOSE_PROJECT_NAME": "image2model"}) + "\n",
     "i2m_env.COMPOSE_PROJECT_NAME differs from i2m_compose_project ({project})"),
    ("a misspelt i2m_remediate_strategy", "i2m_remediate_strategy: build_first\n",
     'i2m_remediate_strategy is "build_first": set it to build-first'),
    ("an ansible-core older than the roles need", "preflight_min_ansible_version: '99.0'\n", "or newer is needed"),
]


@pytest.mark.parametrize("case, vars_text, says", CASES, ids=[case for case, _, _ in CASES])
def test_a_wrong_stack_variable_stops_remediate_before_the_host_is_touched(tmp_path, case, vars_text, says):
    project = f"i2mt-{secrets.token_hex(4)}"
    stack_dir = tmp_path / "stack"
    vars_file = tmp_path / "vars.yml"
    vars_file.write_text(f"i2m_repo_dir: {REPO}\ni2m_project_dir: {stack_dir}\ni2m_compose_project: {project}\n"
                         f"i2m_demo_secrets_dir: {tmp_path / 'secrets'}\ni2m_confirm: false\n")
    override = tmp_path / "override.yml"
    override.write_text(vars_text)
    inventory = local_inventory_copy(tmp_path / "inventory")
    try:
        done = subprocess.run([str(VENV_BIN / "ansible-playbook"), "playbooks/remediate.yml", "-i", str(inventory),
                               "-e", f"@{vars_file}", "-e", f"@{override}"],
                              cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, "ANSIBLE_NOCOLOR": "1"})
        containers = subprocess.run(["docker", "ps", "--all", "--quiet", "--filter", f"label=com.docker.compose.project={project}"],
                                    capture_output=True, text=True, check=True).stdout.split()
    finally:
        remove_stack_resources(project)
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 2, (case, output[-3000:])
    assert says.format(project=project) in output, (case, output[-3000:])
    assert "PLAY [Remediate" not in output, case
    assert not stack_dir.exists() and containers == [], case
