"""The fault catalogue: faults injected for real, one at a time, into a stand-in stack of this
module's own, in production's shape.

For each fault, `i2m-ops diagnose` must put the right cause first; its command, run exactly as
printed (from another folder, through a shell), must leave `i2m-ops verify` green, or, for a
code bug, diagnose must say that no remediation fixes it and print no command; `i2m-ops drift`
must exit 2 naming it wherever the host differs from the inventory; the data written into every
volume before the first fault must still be there after the last. The README's catalogue table
lists the same faults.
"""

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import docker
import pytest
import yaml
from canary import canary_hits
from conftest import REPO, VENV_BIN, Run
from prometheus_client.parser import text_string_to_metric_families
from stack_data import assert_markers, run_in, wait_healthy, write_markers

ENV_FILE = ".env.production"
BACKEND_MAIN = Path("backend") / "app" / "main.py"


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
    path.write_bytes(change(path.read_bytes().decode()).encode())


def docker_cli(*argv):
    subprocess.run(["docker", *argv], check=True, capture_output=True)


def render_env_file_only(stack, vars_file):
    """The env file rendered from an inventory, the containers left alone."""
    assert stack.playbook("../tests/playbooks/render_env_file_only.yml", vars_file).returncode == 0


def rebuild_backend(stack):
    """The backend rebuilt and recreated by hand, nginx reloaded as the tool does after a recreate
    (else nginx would still send requests to the old container's address: a fault of its own)."""
    stack.compose("build", "backend")
    stack.compose("up", "-d", "--no-deps", "backend")
    stack.compose("kill", "-s", "HUP", "nginx")


@pytest.fixture(scope="module")
def deployed(stack):
    run = stack.playbook("deploy.yml")
    assert run.returncode == 0, run.output[-3000:]
    return stack


@pytest.fixture(scope="module")
def markers(deployed):
    return write_markers(deployed)


@pytest.fixture
def restore(deployed):
    """After a change, the stack as the inventory wants it again: deploy re-renders the env file
    and recreates every container whose configuration differs from it."""
    yield deployed
    run = deployed.playbook("deploy.yml")
    assert run.returncode == 0, run.output[-3000:]


@pytest.fixture(scope="module")
def inventory_changes():
    """What the later faults have changed in the inventory, kept: the faults that rotate a value
    leave the stack deployed with it, and the next fault starts from there."""
    return {}


@dataclass
class Fault:
    name: str
    inject: Callable  # (stack, vars_file) -> None
    cause: str  # how the first cause begins
    drifted: Callable | None = None  # (drift items) -> bool, where the host differs from the inventory
    evidence: str = ""  # a line the first cause's evidence holds
    code_bug: bool = False  # no command fixes it: the fault is undone by rebuilding the stand-in's code
    changes_inventory: dict = field(default_factory=dict)  # secrets changed in the inventory first


def names(service, check, item=None, state=""):
    return lambda items: any(found[:2] == (service, check) and (item is None or found[2] == item) and found[3].startswith(state)
                             for found in items)


def stale_by_squatter(stack, vars_file):
    """The backend recreated at another address, its old one taken by another container: nginx,
    which resolved `backend` when it started (no resolver, as in production), sends the API's
    requests to the squatter, which refuses them."""
    network = f"{stack.name}-frontend-network"  # nginx's way to the backend
    old_address = stack.container("backend").attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
    stack.compose("rm", "--stop", "--force", "backend")
    squatter = docker.from_env().containers.run("i2m-base:trixie", ["sleep", "infinity"], detach=True, network=network,
                                                name=f"{stack.name}-squatter", labels={"io.i2m.test": stack.name})
    squatter.reload()
    assert squatter.attrs["NetworkSettings"]["Networks"][network]["IPAddress"] == old_address
    stack.compose("up", "-d", "--no-deps", "backend")
    wait_healthy(stack, "backend")


def import_error_at_start(stack, vars_file):
    main = stack.project_dir / BACKEND_MAIN
    main.write_text("import i2m_missing_module  # the production ImportError kind of bug\n" + main.read_text())
    rebuild_backend(stack)


def name_error_at_request(stack, vars_file):
    # production's bug: a missing import in one upload route, raised at request time
    main = stack.project_dir / BACKEND_MAIN
    main.write_text(main.read_text().replace('    job_id = uuid.uuid4().hex\n', '    job_id = uuid.uuid4().hex\n    shutil.rmtree\n', 1))
    rebuild_backend(stack)


FAULTS = [
    Fault("redis stopped", lambda stack, _: docker_cli("stop", f"{stack.name}-redis"),
          "redis is not running as it should", names("redis", "container", "running", "exited")),
    Fault("postgres stopped", lambda stack, _: docker_cli("stop", f"{stack.name}-postgres"),
          "postgres is not running as it should", names("postgres", "container", "running", "exited")),
    Fault("backend stopped", lambda stack, _: docker_cli("stop", f"{stack.name}-backend"),
          "backend is not running as it should", names("backend", "container", "running", "exited"),
          evidence="nginx http via nginx upload with API key: "),
    Fault("a value edited on the host", lambda stack, _: edit_env_file(
        stack, lambda text: text.replace("RATE_LIMIT_PER_MINUTE='60'", "RATE_LIMIT_PER_MINUTE='5'")),
          "the env file on the host differs from the inventory (RATE_LIMIT_PER_MINUTE) and the containers do not run what it says",
          names("-", "env file", "RATE_LIMIT_PER_MINUTE", "set otherwise in the file on the host")),
    Fault("a key twice in the env file", lambda stack, _: edit_env_file(stack, lambda text: text + "RATE_LIMIT_PER_HOUR='1'\n"),
          "the env file on the host is not the one the inventory renders",
          names("-", "env file", "RATE_LIMIT_PER_HOUR", "set 2 times in the file on the host")),
    Fault("line endings changed", lambda stack, _: edit_env_file(stack, lambda text: text.replace("\n", "\r\n")),
          "the env file on the host is not the one the inventory renders",
          names("-", "env file", "content", "the file on the host differs from the inventory's rendering")),
    Fault("a required key removed from the env file", lambda stack, _: edit_env_file(
        stack, lambda text: "".join(line for line in text.splitlines(True) if not line.startswith("API_KEY="))),
          "the env file on the host differs from the inventory (API_KEY)",
          names("-", "env file", "API_KEY", "in the inventory, missing from the file on the host"),
          evidence="- env file on disk API_KEY: missing"),
    Fault("a glued assignment", lambda stack, _: edit_env_file(stack, lambda text: "\n".join(
        line + "BACKEND_HOST=backend" if line.startswith("PUBLIC_API_URL=") else line
        for line in text.splitlines() if not line.startswith("BACKEND_HOST=")) + "\n"),
          "the env file on the host is not the one the inventory renders",
          names("-", "env file", "PUBLIC_API_URL", "set otherwise"), evidence="another assignment glued on (BACKEND_HOST=)"),
    Fault("started without --env-file (the report's)", lambda stack, _: stack.compose(
        "up", "-d", "--force-recreate", "--no-deps", "backend", "worker", with_env_file=False),
          "the containers were started without --env-file", names("backend", "env", "API_KEY", "empty")),
    Fault("nginx at the backend's old address", stale_by_squatter,
          "nginx sends requests to an address the backend no longer has", None),
    Fault("uploads volume not writable", lambda stack, _: run_in(stack, "backend", "chmod", "0555", "/app/uploads", user="0"),
          "the backend's user (app) cannot write /app/uploads", None),
    Fault("an ImportError at start", import_error_at_start,
          "backend crashes at start on an error in the application code", names("backend", "container", "running"),
          code_bug=True),
    Fault("a NameError at request time", name_error_at_request, "a bug in the application code at request time", None,
          code_bug=True),
    # From here on each fault changes the inventory, and its fix deploys the change.
    Fault("a value changed, then docker restart", lambda stack, vars_file: (
        render_env_file_only(stack, vars_file), docker_cli("restart", f"{stack.name}-backend"), wait_healthy(stack, "backend")),
          "stale containers", names("backend", "config hash", "compose config", "differs"),
          changes_inventory={"RATE_LIMIT_PER_HOUR": "900"}),
    Fault("the inventory ahead of the host (a rotated secret)", lambda stack, vars_file: None,
          "the inventory is ahead of the host (API_KEY)", names("-", "env file", "API_KEY", "set otherwise"),
          changes_inventory={"API_KEY": "i2mRotatedKey"}),
    Fault("redis started with another password", render_env_file_only,
          "the redis password in the env file no longer matches the running redis",
          names("redis", "config hash", "compose config", "differs"),
          changes_inventory={"REDIS_PASSWORD": "i2mNewRedisPassword", **{
              key: "redis://:i2mNewRedisPassword@redis:6379/0" for key in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")}}),
]


def inventory_with(stack, changes: dict) -> Path:
    """A vars file of the stack's inventory with these values (secrets or not) changed."""
    env = yaml.safe_load((REPO / "inventory/local/group_vars/all/env.yml").read_text())["i2m_env"]
    return stack.vars_file(i2m_env_secrets={**stack.secrets, **{key: value for key, value in changes.items() if key in stack.secrets}},
                           i2m_env={**env, **{key: value for key, value in changes.items() if key not in stack.secrets}})


def run_as_printed(stack, command: str, folder: Path) -> Run:
    """A printed command through a shell, from another folder, with the venv's i2m-ops first on PATH."""
    done = subprocess.run(command, shell=True, cwd=folder, capture_output=True, text=True, timeout=900,
                          env={"PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": str(Path.home())})
    return stack._kept(command.split()[0], Run(done.returncode, done.stdout + done.stderr))


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


@pytest.mark.parametrize("fault", FAULTS, ids=[fault.name for fault in FAULTS])
def test_fault_is_diagnosed_and_its_printed_command_fixes_it(deployed, markers, inventory_changes, fault, tmp_path):
    inventory_changes.update(fault.changes_inventory)
    vars_file = inventory_with(deployed, inventory_changes)
    fault.inject(deployed, vars_file)
    try:
        cause = top_cause(deployed, vars_file)
        assert cause["cause"].startswith(fault.cause), cause
        assert not fault.evidence or any(fault.evidence in line for line in cause["evidence"]), cause["evidence"]
        if fault.drifted:
            code, items = drift_items(deployed, vars_file)
            assert code == 2 and fault.drifted(items), items
        if fault.code_bug:
            assert cause["command"] == "" and cause["remediation_fixes"] is False
            assert "docker logs" in cause["action"]
            return
        fixed = run_as_printed(deployed, cause["command"], tmp_path)
        assert fixed.returncode == 0, fixed.output[-3000:]
    finally:
        if fault.code_bug:
            main = deployed.project_dir / BACKEND_MAIN
            main.write_text((REPO / "standin" / BACKEND_MAIN).read_text())
            rebuild_backend(deployed)
        for container in docker.from_env().containers.list(all=True, filters={"label": f"io.i2m.test={deployed.name}"}):
            container.remove(force=True)
    code, document = deployed.cli("verify", vars_file=vars_file)
    assert code == 0, [check for check in document["checks"]["localhost"] if not check["ok"]]
    assert_markers(deployed, markers, inventory_changes.get("REDIS_PASSWORD"))


def test_no_canary_in_any_output(deployed):
    assert len(deployed.outputs) >= 40
    assert canary_hits("\n".join(deployed.outputs), deployed.secrets) == []
