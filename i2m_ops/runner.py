"""Runs one playbook through ansible-runner's Python API."""

import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import ansible_runner

from i2m_ops.folding import EventFolder, StageResult

REPO = Path(__file__).resolve().parents[1]


def run_stage(name: str, playbook: str, *, inventory: Path, run_dir: Path, playbook_args: list, on_event=None) -> StageResult:
    """Runs playbooks/<playbook> with a known ident; its artifacts land in run_dir/<name>/.

    The private data folder is a fresh temporary one, outside the repo, and ansible-runner is
    told not to write env/ files: extra vars reach the playbook only as `-e @file`. on_event is
    called with (name, event) for every event. Returns the folded result; ansible-runner's own
    errors surface as a failed StageResult with `error` set, never as an exception.
    """
    stage = StageResult(name=name, playbook=f"playbooks/{playbook}")
    private_dir = tempfile.mkdtemp(prefix="i2m-ops-runner-")
    started = time.monotonic()
    try:
        runner = ansible_runner.run(
            private_data_dir=private_dir,
            project_dir=str(REPO),
            playbook=stage.playbook,
            inventory=str(inventory),
            cmdline=shlex.join(playbook_args),
            ident=name,
            artifact_dir=str(run_dir),
            rotate_artifacts=0,
            suppress_env_files=True,
            quiet=True,
            envvars={"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
                     # Recorded in the stack's lock: who holds it, for `i2m-ops unlock` and the readers.
                     "I2M_OPS_PID": str(os.getpid()), "I2M_OPS_RUN_ID": run_dir.name,
                     # ansible-runner turns host key checking off unless told: ansible.cfg's policy holds.
                     "ANSIBLE_HOST_KEY_CHECKING": "True",
                     # The venv's ansible-playbook, also when the venv is not activated.
                     "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
            event_handler=EventFolder(stage, on_event),
            # Without a callback of its own, ansible-runner takes SIGINT and SIGTERM for itself and
            # kills the playbook outright (SIGKILL: no rescue, no release of the lock). The CLI's
            # handlers (i2m_ops/interrupts.py) pass the signal on instead.
            cancel_callback=lambda: False,
        )
    finally:
        shutil.rmtree(private_dir, ignore_errors=True)
    stage.status, stage.rc = runner.status, runner.rc
    stage.duration_s = round(time.monotonic() - started, 2)
    if stage.status != "successful" and not stage.hosts:
        stage.error = " ".join(runner.stdout.read().split()[-60:])
    _trim_command_artifact(run_dir / name / "command")
    return stage


def _trim_command_artifact(path: Path) -> None:
    """ansible-runner records the whole process environment there; keep only Ansible's settings."""
    if path.is_file():
        command = json.loads(path.read_text())
        command["env"] = {key: value for key, value in command.get("env", {}).items() if key.startswith(("ANSIBLE_", "RUNNER_"))}
        path.write_text(json.dumps(command))
