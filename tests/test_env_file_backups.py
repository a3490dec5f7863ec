"""The env file's backups: each holds the secrets of its day, so only the last env_file_backups
are kept. The env_file role run for real by ansible-playbook on a folder of its own; no stack."""

import os
import subprocess

import yaml
from canary import canary_secrets
from conftest import REPO, VENV_BIN, local_inventory_copy

ENV_FILE = ".env.production"


def test_only_the_last_three_backups_are_kept_and_the_newest_holds_the_previous_file(tmp_path):
    inventory = local_inventory_copy(tmp_path / "inventory")
    project = tmp_path / "stack"
    project.mkdir()
    contents = []
    for render in range(6):
        secrets = canary_secrets(f"backup{render}")
        vars_file = tmp_path / f"vars-{render}.yml"
        vars_file.touch(mode=0o600)
        vars_file.write_text(yaml.safe_dump({"i2m_project_dir": str(project), "i2m_repo_dir": str(REPO), "i2m_env_secrets": secrets}))
        done = subprocess.run([str(VENV_BIN / "ansible-playbook"), "tests/playbooks/render_env_file_only.yml", "-i", str(inventory),
                               "-e", f"@{vars_file}"], cwd=REPO, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "ANSIBLE_NOCOLOR": "1"})
        assert done.returncode == 0, done.stdout[-3000:]
        contents.append((project / ENV_FILE).read_bytes())
    backups = sorted(project.glob(f"{ENV_FILE}.*~"), key=lambda path: path.stat().st_mtime_ns)
    assert len(backups) == 3
    # The backups are the files of renders 2, 3 and 4 (render 5's file is the env file itself).
    assert [path.read_bytes() for path in backups] == contents[2:5]
    assert all(oct(path.stat().st_mode & 0o777) == "0o600" for path in backups)
