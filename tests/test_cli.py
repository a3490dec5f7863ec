"""i2m-ops, the real console script over real ansible-runner, on a stand-in stack of its own."""

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from canary import canary_hits
from conftest import REPO, VENV_BIN, local_inventory_copy
from run_schema import assert_matches_schema
from typer.testing import CliRunner

from i2m_ops.cli import app
from i2m_ops.folding import EventFolder, StageResult
from i2m_ops.lock import InventoryLock



@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="module")
def outputs():
    return []


def i2m_ops(stack, outputs, *args, vars_file=None, artifacts=None, wait=True):
    command = [str(VENV_BIN / "i2m-ops"), *args, "-e", f"@{vars_file or stack.vars_file()}"]
    if artifacts:
        command += ["--artifacts-dir", str(artifacts)]
    if not wait:
        return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    outputs.append(done.stdout + done.stderr)
    leaked = canary_hits(done.stdout + done.stderr, stack.secrets)
    assert not leaked, f"i2m-ops {args[0]} printed the secret value of {leaked}"
    return done


def inventory_with(tmp_path, hosts: dict) -> Path:
    """An inventory of its own (its own lock), with the local group_vars and the given hosts."""
    folder = local_inventory_copy(tmp_path / "inventory")
    (folder / "hosts.yml").write_text(yaml.safe_dump({"i2m_stack": {"hosts": hosts}}))
    return folder


LOCALHOST = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}


def test_remediate_exits_0_and_writes_json_and_markdown(stack, outputs, artifacts):
    done = i2m_ops(stack, outputs, "remediate", "--json", artifacts=artifacts)
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(done.stdout)
    assert document["schema"] == "i2m-ops/run/1" and document["exit_code"] == 0
    assert document["stages"][0]["status"] == "successful"
    assert document["hosts"]["localhost"]["failed"] == 0 and document["hosts"]["localhost"]["changed"] > 0
    assert document["checks"]["localhost"] and all(check["ok"] for check in document["checks"]["localhost"])
    run_dir = Path(document["artifacts"])
    assert json.loads((run_dir / "run.json").read_text()) == document
    markdown = (run_dir / "report.md").read_text()
    for heading in ["## Executive Summary", "## Investigation Results", "## Actions Taken", "## Next Steps"]:
        assert heading in markdown
    assert "✅ backend env API_KEY: match" in markdown


def test_verify_on_stale_containers_exits_1_naming_host_service_and_key(stack, outputs, artifacts):
    stack.compose("up", "-d", "--force-recreate", "--no-deps", "backend", "worker", with_env_file=False)
    done = i2m_ops(stack, outputs, "verify", "--json", artifacts=artifacts)
    assert done.returncode == 1
    document = json.loads(done.stdout)
    failing = {(check["service"], check["item"]) for check in document["checks"]["localhost"] if not check["ok"]}
    assert {("backend", "API_KEY"), ("worker", "FAL_API_KEY")} <= failing
    assert any(task["host"] == "localhost" for task in document["failed_tasks"])
    assert "stale containers" in (Path(document["artifacts"]) / "report.md").read_text()

    fixed = i2m_ops(stack, outputs, "remediate", artifacts=artifacts)
    assert fixed.returncode == 0, fixed.stdout[-3000:]
    # Off a terminal: one plain line per task that ran; skipped ones (other strategies) never.
    assert "remediate: localhost: Follow compose's build progress, every 2 s, of backend" in fixed.stderr
    assert "Remediate rolling" not in fixed.stderr and "Remediate in the diagnosis report's order" not in fixed.stderr


def test_recorded_events_fold_to_the_same_result(artifacts):
    """The events ansible-runner recorded on disk during the runs above, folded again."""
    for document_path in sorted(artifacts.glob("*/run.json")):
        document = json.loads(document_path.read_text())
        stage = StageResult(name=document["command"], playbook=document["stages"][0]["playbook"])
        fold = EventFolder(stage)
        events = sorted(document_path.parent.glob(f"{document['command']}/job_events/*.json"),
                        key=lambda path: int(path.name.split("-")[0]))
        assert events, f"no recorded events for {document['run_id']}"
        for path in events:
            assert fold(json.loads(path.read_text())) is True
        assert stage.hosts == document["hosts"]
        assert stage.checks == document["checks"]
        assert [task["task"] for task in stage.failed_tasks] == [task["task"] for task in document["failed_tasks"]]


def test_one_unreachable_host_exits_4_and_the_reachable_one_is_processed(stack, outputs, artifacts, tmp_path):
    inventory = inventory_with(tmp_path, {"localhost": LOCALHOST,
                                          "unreachable-host": {"ansible_host": "127.0.0.1", "ansible_port": 1}})
    vars_file = stack.vars_file(i2m_repo_dir=str(REPO))
    done = i2m_ops(stack, outputs, "verify", "-i", str(inventory), "--json", vars_file=vars_file, artifacts=artifacts)
    assert done.returncode == 4, done.stderr[-2000:]
    document = json.loads(done.stdout)
    assert list(document["unreachable_hosts"]) == ["unreachable-host"]
    assert document["checks"]["localhost"] and all(check["ok"] for check in document["checks"]["localhost"])
    assert "unreachable-host" in (Path(document["artifacts"]) / "report.md").read_text()


def test_second_run_on_the_same_inventory_stops_at_once_naming_the_holder(stack, outputs, artifacts, tmp_path):
    """Runs that change the hosts take the inventory's lock (read-only ones do not)."""
    inventory = inventory_with(tmp_path, {"localhost": LOCALHOST})
    vars_file = stack.vars_file(i2m_repo_dir=str(REPO))
    first = i2m_ops(stack, outputs, "deploy", "-i", str(inventory), vars_file=vars_file, artifacts=artifacts, wait=False)
    lock_dir = REPO / ".state" / "locks"
    deadline = time.monotonic() + 30
    while not any(str(first.pid) in path.read_text() for path in lock_dir.glob("*.lock")):
        assert time.monotonic() < deadline and first.poll() is None, "the first run never took the lock"
        time.sleep(0.1)
    second = i2m_ops(stack, outputs, "deploy", "-i", str(inventory), vars_file=vars_file, artifacts=artifacts)
    # It stopped without waiting for the lock: the first run still holds it.
    first_still_running = first.poll() is None
    out, err = first.communicate(timeout=600)
    outputs.append(out + err)
    assert second.returncode == 3
    assert first_still_running, "the second run ended only after the first: it waited for the lock"
    assert f"pid {first.pid}" in second.stderr and "i2m-ops deploy" in second.stderr
    assert first.returncode == 0, out[-2000:]


def test_a_lock_left_by_a_dead_run_is_taken_over(stack, outputs, artifacts, tmp_path):
    inventory = inventory_with(tmp_path, {"localhost": LOCALHOST})
    lock_path = InventoryLock(REPO / ".state" / "locks", inventory, "probe").path
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock_path.write_text(json.dumps({"pid": 999999, "command": "i2m-ops remediate", "started_at": "2026-01-01T00:00:00Z"}))
    done = i2m_ops(stack, outputs, "deploy", "-i", str(inventory), vars_file=stack.vars_file(i2m_repo_dir=str(REPO)),
                   artifacts=artifacts)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "taking over the lock left by pid 999999" in done.stderr


@pytest.mark.parametrize("args, message", [
    (["-i", "no/such/inventory"], "inventory no/such/inventory not found"),
    (["-e", "not a pair"], "-e number 1 is not KEY=VALUE, a JSON/YAML mapping or @FILE"),
    (["-e", "{unclosed: [1"], "-e number 1 is not valid YAML or JSON"),
    (["-e", "@no/such/file.yml"], "-e number 1: file no/such/file.yml not found"),
    (["--vault-password-file", "no/such/vault-pass"], "--vault-password-file no/such/vault-pass cannot be read"),
])
def test_bad_input_exits_3_with_one_line_before_any_playbook(args, message, tmp_path):
    result = CliRunner().invoke(app, ["remediate", *args, "--artifacts-dir", str(tmp_path)])
    assert result.exit_code == 3
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_inventory_without_stack_hosts_exits_3(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"web": {"hosts": {"localhost": {}}}}))
    result = CliRunner().invoke(app, ["verify", "-i", str(inventory), "--artifacts-dir", str(tmp_path / "runs")])
    assert result.exit_code == 3
    assert "has no host in the group i2m_stack" in result.output


def vaulted_inventory(tmp_path) -> tuple[Path, Path]:
    """An inventory whose group_vars/all/vault.yml is vaulted: the inventory and the vaulted file."""
    inventory = tmp_path / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"i2m_stack": {"hosts": {"localhost": LOCALHOST}}}))
    vault = inventory / "group_vars" / "all" / "vault.yml"
    vault.write_text("vault_api_key: i2mVaultedCanary\n")
    password = tmp_path / "vault-pass"
    password.write_text("i2m-test-vault-password\n")
    subprocess.run([str(VENV_BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(password), str(vault)],
                   check=True, capture_output=True)
    return inventory, vault


def test_vaulted_inventory_without_the_password_exits_3_naming_the_file(tmp_path):
    inventory, vault = vaulted_inventory(tmp_path)
    result = CliRunner().invoke(app, ["verify", "-i", str(inventory), "--artifacts-dir", str(tmp_path / "runs")])
    assert result.exit_code == 3
    assert f"{vault} is vaulted and no --vault-password-file was given" in result.output
    assert "i2mVaultedCanary" not in result.output


def test_wrong_vault_password_exits_3_naming_the_file_that_did_not_decrypt(tmp_path):
    inventory, vault = vaulted_inventory(tmp_path)
    wrong = tmp_path / "wrong-pass"
    wrong.write_text("not-the-password\n")
    result = CliRunner().invoke(app, ["verify", "-i", str(inventory), "--vault-password-file", str(wrong),
                                      "--artifacts-dir", str(tmp_path / "runs")])
    assert result.exit_code == 3
    assert f"{vault} did not decrypt with the password in --vault-password-file {wrong}" in result.output
    assert "i2mVaultedCanary" not in result.output and "not-the-password" not in result.output
    assert not (tmp_path / "runs").exists(), "a run folder was made although the run could not start"


def test_every_run_document_matches_the_published_schema(artifacts):
    documents = [json.loads(path.read_text()) for path in sorted(artifacts.glob("*/run.json"))]
    assert len(documents) >= 6
    for document in documents:
        assert_matches_schema(document)


def test_no_canary_in_any_artifact_or_output(stack, outputs, artifacts):
    files = [path for path in artifacts.rglob("*") if path.is_file()]
    assert len(files) > 20 and len(outputs) >= 6
    leaked = {str(path.relative_to(artifacts)): hits for path in files
              if (hits := canary_hits(path.read_bytes().decode(errors="replace"), stack.secrets))}
    assert leaked == {}
    assert canary_hits("\n".join(outputs), stack.secrets) == []
