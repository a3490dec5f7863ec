"""Drift and diagnosis on a stand-in stack of this module's own, each fault injected for real.

For every fault, `i2m-ops diagnose` must name it as the most likely cause and `i2m-ops drift`
(where it applies) must exit 2 with the matching items; then the stack is restored.
"""

import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from canary import canary_hits
from conftest import REPO, VENV_BIN

ENV_FILE = ".env.production"


def top_cause(stack, vars_file=None):
    code, document = stack.cli("diagnose", vars_file=vars_file)
    causes = document["diagnosis"]["localhost"]["causes"]
    assert code == 1 and causes, f"diagnose found nothing (exit {code})"
    return causes[0]


def drift_items(stack, vars_file=None):
    code, document = stack.cli("drift", vars_file=vars_file)
    return code, {(item["service"], item["check"], item["item"], item["state"])
                  for item in document["drift"]["localhost"] if not item["ok"]}


def edit_env_file(stack, change):
    path = stack.project_dir / ENV_FILE
    path.write_text(change(path.read_text()))


@pytest.fixture(scope="module")
def deployed(stack):
    run = stack.playbook("deploy.yml")
    assert run.returncode == 0, run.output[-3000:]
    return stack


@pytest.fixture
def restore(deployed):
    """After a fault, the stack as the inventory wants it again: deploy re-renders the env file
    and recreates every container whose configuration differs from it."""
    yield deployed
    run = deployed.playbook("deploy.yml")
    assert run.returncode == 0, run.output[-3000:]


@pytest.fixture
def rebuild(deployed):
    """After a fault in the code, the stand-in's own code back and the backend rebuilt."""
    yield deployed
    run = deployed.playbook("remediate.yml")
    assert run.returncode == 0, run.output[-3000:]


def stack_state(stack):
    containers = subprocess.run(["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={stack.name}",
                                 "--format", "{{.ID}} {{.Names}} {{.Status}}"], capture_output=True, text=True).stdout
    started = subprocess.run(["docker", "inspect", "--format", "{{.Id}} {{.State.StartedAt}}",
                              *[line.split()[0] for line in containers.splitlines()]], capture_output=True, text=True).stdout
    env_file = stack.project_dir / ENV_FILE
    return started, env_file.read_bytes(), env_file.stat().st_mtime_ns, sorted(path.name for path in stack.project_dir.iterdir())


def test_healthy_stack_has_no_drift_and_no_fault(deployed):
    code, items = drift_items(deployed)
    assert (code, items) == (0, set())
    code, document = deployed.cli("diagnose")
    assert code == 0 and document["diagnosis"]["localhost"]["causes"] == []
    assert not [item for item in document["diagnosis"]["localhost"]["evidence"] if not item["ok"]]


def test_drift_changes_nothing(deployed):
    before = stack_state(deployed)
    assert drift_items(deployed, deployed.vars_file(i2m_env_secrets={**deployed.secrets, "API_KEY": "changed-but-not-applied"}))[0] == 2
    assert stack_state(deployed) == before


def test_stale_containers(deployed, restore):
    rotated = deployed.vars_file(i2m_env_secrets={**deployed.secrets, "API_KEY": "i2mRotatedKey"})
    assert deployed.playbook("../tests/playbooks/render_env_file_only.yml", rotated).returncode == 0
    cause = top_cause(deployed, rotated)
    assert cause["cause"].startswith("stale containers") and cause["remediation_fixes"]
    code, items = drift_items(deployed, rotated)
    assert code == 2
    assert {("backend", "env", "API_KEY", "mismatch"), ("frontend", "env", "API_KEY", "mismatch")} <= items
    assert ("backend", "started after env file", "start time", "started before the env file last changed") in items


def test_stack_started_without_env_file(deployed, restore):
    deployed.compose("up", "-d", "--force-recreate", "--no-deps", "backend", "worker", with_env_file=False)
    cause = top_cause(deployed)
    assert cause["cause"].startswith("the containers were started without --env-file")
    code, items = drift_items(deployed)
    assert code == 2 and ("backend", "env", "API_KEY", "empty") in items


def test_required_key_missing_from_env_file(deployed, restore):
    edit_env_file(deployed, lambda text: "".join(line for line in text.splitlines(True) if not line.startswith("API_KEY=")))
    cause = top_cause(deployed)
    assert cause["cause"] == "a required key is missing or empty in the env file"
    assert "- env file on disk API_KEY: missing" in cause["evidence"]
    code, items = drift_items(deployed)
    assert code == 2 and ("-", "env file", "API_KEY", "missing from file") in items


def test_malformed_env_line_with_a_glued_assignment(deployed, restore):
    def glue(text):
        lines = [line for line in text.splitlines() if not line.startswith("BACKEND_HOST=")]
        return "\n".join(line + "BACKEND_HOST=backend" if line.startswith("PUBLIC_API_URL=") else line for line in lines) + "\n"

    edit_env_file(deployed, glue)
    cause = top_cause(deployed)
    assert cause["cause"].startswith("a malformed line in the env file")
    assert any("PUBLIC_API_URL" in line and "BACKEND_HOST" in line for line in cause["evidence"])
    code, items = drift_items(deployed)
    assert code == 2 and ("-", "env file", "PUBLIC_API_URL", "differs") in items


def test_nginx_cannot_reach_a_stopped_backend(deployed, restore):
    subprocess.run(["docker", "stop", f"{deployed.name}-backend"], check=True, capture_output=True)
    cause = top_cause(deployed)
    assert cause["cause"] == "nginx cannot reach the backend: the backend is not running"
    code, items = drift_items(deployed)
    assert code == 2 and any(item[:3] == ("backend", "container", "running") and item[3].startswith("exited")
                             for item in items)


def test_backend_crashing_on_an_import_error_is_not_sent_to_remediation(deployed, rebuild):
    main = deployed.project_dir / "backend" / "app" / "main.py"
    main.write_text("import i2m_missing_module  # the production NameError/ImportError kind of bug\n" + main.read_text())
    deployed.compose("build", "backend")
    deployed.compose("up", "-d", "--no-deps", "backend")
    cause = top_cause(deployed)
    assert cause["cause"].startswith("the backend crashes at start on an error in the application code")
    assert cause["remediation_fixes"] is False
    assert "remediate" not in cause["action"] and "docker logs" in cause["action"]
    code, items = drift_items(deployed)
    assert code == 2 and any(item[:3] == ("backend", "container", "running") for item in items)


def test_redis_password_in_env_file_no_longer_matches_running_redis(deployed, restore):
    password = "i2mNewRedisPassword"
    url = f"redis://:{password}@redis:6379/0"
    changed = deployed.vars_file(i2m_env_secrets={**deployed.secrets, "REDIS_PASSWORD": password, "REDIS_URL": url,
                                                  "CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url})
    assert deployed.playbook("../tests/playbooks/render_env_file_only.yml", changed).returncode == 0
    cause = top_cause(deployed, changed)
    assert cause["cause"].startswith("the redis password in the env file no longer matches the running redis")
    code, items = drift_items(deployed, changed)
    # The password reaches redis through its command, so the configuration compose would give redis now differs
    assert code == 2 and ("redis", "config hash", "compose config",
                          "differs: the container predates the current configuration") in items


def test_diagnosis_report_reads_like_the_seed_report(deployed):
    code, document = deployed.cli("diagnose")
    markdown = (Path(document["artifacts"]) / "report.md").read_text()
    for heading in ["## Executive Summary", "## Investigation Results", "## Most Likely Root Cause",
                    "## Recommended Actions", "## Next Steps"]:
        assert heading in markdown


def metric_samples(text: str) -> dict:
    """A textfile's samples as {(name, sorted label pairs): value}, read by prometheus_client's
    own parser (label order and number format are the writer's to choose)."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_scheduled_drift_check_installs_runs_and_removes(deployed, tmp_path):
    cron_dir, metrics = tmp_path / "cron.d", tmp_path / "textfile" / "i2m_drift.prom"
    cron_dir.mkdir()
    settings = {"drift_schedule_cron_dir": str(cron_dir), "drift_schedule_output": str(metrics),
                "drift_schedule_lock": str(tmp_path / "drift.lock"), "drift_schedule_interval_minutes": 10,
                "drift_schedule_manager": "cron", "drift_schedule_extra_args": ["-e", f"@{deployed.vars_file()}"],
                "drift_schedule_inventory": str(deployed.inventory)}
    installed = deployed.playbook("schedule.yml", deployed.vars_file(**settings))
    assert installed.returncode == 0, installed.output[-3000:]
    entry = (cron_dir / "i2m-ops-drift").read_text().splitlines()
    *schedule, user, command = entry[-1].split(" ", 6)
    assert schedule == ["*/10", "*", "*", "*", "*"] and user == "root"
    assert command.startswith(f"flock -n {tmp_path / 'drift.lock'} ") and " drift -i " in command
    assert f"--format prometheus --output {metrics}" in command

    ran = subprocess.run(["bash", "-c", command], cwd="/", capture_output=True, text=True, timeout=600)
    deployed.outputs.append(ran.stdout + ran.stderr)
    assert ran.returncode == 0, ran.stderr[-2000:]
    text = metrics.read_text()
    samples = metric_samples(text)
    assert samples[("i2m_drift_exit_code", ())] == 0 and samples[("i2m_drift_host_drifted", (("host", "localhost"),))] == 0
    assert [path.name for path in metrics.parent.iterdir()] == ["i2m_drift.prom"]

    removed = deployed.playbook("schedule.yml", deployed.vars_file(**settings, drift_schedule_state="absent"))
    assert removed.returncode == 0 and not (cron_dir / "i2m-ops-drift").exists()


def test_prometheus_output_names_the_drifted_host(deployed, tmp_path):
    metrics = tmp_path / "drift.prom"
    drifted = deployed.vars_file(i2m_env_secrets={**deployed.secrets, "API_KEY": "not-yet-applied"})
    done = subprocess.run([str(VENV_BIN / "i2m-ops"), "drift", "--format", "prometheus", "--output", str(metrics),
                           "-e", f"@{drifted}"], cwd=REPO, capture_output=True, text=True, timeout=600)
    deployed.outputs.append(done.stdout + done.stderr)
    assert done.returncode == 2
    text = metrics.read_text()
    samples = metric_samples(text)
    assert samples[("i2m_drift_host_drifted", (("host", "localhost"),))] == 1 and samples[("i2m_drift_exit_code", ())] == 2
    assert samples[("i2m_drift_items", (("check", "env file"), ("host", "localhost"), ("service", "-")))] == 1


def test_drift_remediate_fixes_only_the_drifted_hosts_without_asking_when_told(deployed, restore):
    rotated = deployed.vars_file(i2m_env_secrets={**deployed.secrets, "API_KEY": "i2mRotatedAgain"})
    code, document = deployed.cli("drift", "--remediate", "--yes", vars_file=rotated)
    assert code == 0, document.get("failed_tasks")
    assert [stage["name"] for stage in document["stages"]] == ["drift", "remediate"]
    assert all(check["ok"] for check in document["checks"]["localhost"])
    assert drift_items(deployed, rotated) == (0, set())


def test_no_canary_in_any_output(deployed):
    assert len(deployed.outputs) >= 10
    assert canary_hits("\n".join(deployed.outputs), deployed.secrets) == []
