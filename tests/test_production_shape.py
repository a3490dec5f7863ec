"""The production-shaped stand-in with production's own healthcheck intervals (10 to 30 s), as
an operator's server runs it: every remediation strategy from a host where no container runs,
and the production example inventory an operator copies, proven against production's shape.

After each remediation: `verify` exits 0, `drift` exits 0 with no item, and `diagnose` exits 0
with no failing evidence.
"""

import shutil

import pytest
import yaml
from conftest import REPO

PRODUCTION_FILES = ["docker-compose.prod.yml"]
ROLLING_FILES = ["docker-compose.prod.yml", "docker-compose.rolling.yml"]


@pytest.fixture(scope="module")
def production_stack(stack):
    stack.compose_files = PRODUCTION_FILES
    return stack


def assert_healthy_without_drift_or_fault(stack, vars_file):
    code, document = stack.cli("verify", vars_file=vars_file)
    assert code == 0, [check for check in document.get("checks", {}).get("localhost", []) if not check["ok"]]
    code, document = stack.cli("drift", vars_file=vars_file)
    drifted = [item for item in document["drift"]["localhost"] if not item["ok"]]
    assert (code, drifted) == (0, [])
    code, document = stack.cli("diagnose", vars_file=vars_file)
    diagnosis = document["diagnosis"]["localhost"]
    assert (code, diagnosis["causes"]) == (0, [])
    assert [item for item in diagnosis["evidence"] if not item["ok"]] == []


@pytest.mark.parametrize("strategy, files", [("build-first", PRODUCTION_FILES), ("report", PRODUCTION_FILES),
                                             ("rolling", ROLLING_FILES)])
def test_each_strategy_from_zero_containers_ends_healthy_without_drift(production_stack, strategy, files):
    stack = production_stack
    if (stack.project_dir / "docker-compose.prod.yml").exists():
        stack.compose("down")  # volumes stay: a host where none of the stack runs
        assert not stack.containers("backend") and not stack.containers("postgres")
    vars_file = stack.vars_file(i2m_remediate_strategy=strategy, i2m_compose_files=files)
    run = stack.playbook("remediate.yml", vars_file)
    assert run.returncode == 0, run.output[-3000:]
    assert_healthy_without_drift_or_fault(stack, vars_file)


def production_example_inventory(stack, folder):
    """inventory/production.example, copied as the README says, changed only where a test host
    must differ: the connection (this machine), the project folder and name (a stack of the
    test's own on a shared engine), and the secrets (the test's canaries, as vault variables)."""
    shutil.copytree(REPO / "inventory" / "production.example", folder)
    (folder / "hosts.yml").write_text(yaml.safe_dump({"i2m_stack": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}}}))
    stack_vars = folder / "group_vars" / "all" / "stack.yml"
    text = stack_vars.read_text()
    text = text.replace("i2m_project_dir: /opt/image2model", f"i2m_project_dir: {stack.project_dir}")
    text = text.replace("i2m_compose_project: image2model", f"i2m_compose_project: {stack.name}")
    stack_vars.write_text(text)
    vault = {f"vault_{key.lower()}": stack.secrets[key] for key in
             ["SECRET_KEY", "API_KEY", "ADMIN_API_KEY", "FAL_API_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "FLOWER_BASIC_AUTH"]}
    # The stand-in stands for the server's checkout: put in place by the standin role.
    vault["i2m_standin_source"] = str(REPO / "standin")
    vars_file = stack.vars_dir / "production-example-vault.yml"
    vars_file.touch(mode=0o600)
    vars_file.write_text(yaml.safe_dump(vault))
    return vars_file


def test_production_example_inventory_passes_verify_and_drift(production_stack, tmp_path):
    stack = production_stack
    inventory = tmp_path / "production"
    vars_file = production_example_inventory(stack, inventory)
    for playbook in ["deploy.yml", "verify.yml"]:
        run = stack.playbook(playbook, vars_file, inventory=str(inventory))
        assert run.returncode == 0, run.output[-3000:]
    drift = stack.playbook("drift.yml", vars_file, inventory=str(inventory))
    assert drift.returncode == 0 and "no drift on localhost" in drift.output, drift.output[-3000:]
