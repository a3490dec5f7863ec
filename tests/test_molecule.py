"""Every molecule scenario, run with `molecule test` against the real engine.

Each run gets its own I2M_TEST_RUN_ID, hence its own instance and compose project names.
"""

import os
import re
import secrets
import subprocess

import pytest
import yaml
from conftest import REPO, VENV_BIN

SCENARIOS = sorted(path.name for path in (REPO / "molecule").iterdir() if (path / "molecule.yml").is_file())


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario, tmp_path):
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "I2M_TEST_RUN_ID": secrets.token_hex(3),
           "ANSIBLE_NOCOLOR": "1", "NO_COLOR": "1"}
    done = subprocess.run([str(VENV_BIN / "molecule"), "test", "-s", scenario], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1200)
    (tmp_path / "molecule.log").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    sequence = yaml.safe_load((REPO / "molecule" / scenario / "molecule.yml").read_text())["scenario"]["test_sequence"]
    if "idempotence" in sequence:
        assert re.search(rf"{scenario} (➜|>) idempotence: Executed: Successful", done.stdout + done.stderr)
