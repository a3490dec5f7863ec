"""Inputs that Ansible or YAML would silently change: Ansible's own YAML tags, secrets holding
Jinja markers, numbers typed in YAML. The real console script, ansible-inventory, ansible-vault
and ansible-playbook (the audit and preflight playbooks, which change nothing); no stack is needed."""

import json
import os
import subprocess

import yaml
from canary import canary_hits
from conftest import REPO, VENV_BIN, local_inventory_copy

from i2m_ops.redact import MARK

LOCALHOST = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
UNSAFE_SECRET = "u{{ 6*7 }}n{% if %}s'a f\"e$#\\"
VAULTED_SECRET = "v{{ 6*7 }} a'u\"l$t#\\"


def encrypt_string(password_file, value: str, name: str) -> str:
    """`name: !vault |` followed by value's ciphertext, as ansible-vault encrypt_string writes it."""
    done = subprocess.run([str(VENV_BIN / "ansible-vault"), "encrypt_string", "--vault-password-file", str(password_file),
                           "--stdin-name", name], input=value, capture_output=True, text=True, check=True)
    return done.stdout


def run_audit(tmp_path, vars_text: str, password_file, inventory_vars: dict | None = None):
    """i2m-ops audit --json on localhost with an inventory (hence a lock) of its own in tmp_path."""
    inventory = local_inventory_copy(tmp_path / "inventory")
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"i2m_stack": {"hosts": {"localhost": {**LOCALHOST, **(inventory_vars or {})}}}}))
    vars_file = tmp_path / "vars.yml"
    vars_file.write_text(vars_text)
    command = [str(VENV_BIN / "i2m-ops"), "audit", "--json", "-i", str(inventory), "-e", f"@{vars_file}",
               "--vault-password-file", str(password_file), "--artifacts-dir", str(tmp_path / "runs")]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_unsafe_and_vault_tags_in_an_extra_vars_file_reach_ansible_and_their_values_are_redacted(tmp_path):
    password_file = tmp_path / "vault-pass"
    password_file.write_text("i2m-test-vault-password\n")
    # A project folder whose name Ansible would template without !unsafe ({{ x }} is undefined).
    project = tmp_path / "stack {{ x }}"
    project.mkdir()
    (project / ".i2m-audit.log").write_text(f"a line holding {UNSAFE_SECRET} and {VAULTED_SECRET}\n")
    vars_text = (f"i2m_project_dir: !unsafe '{project}'\ni2m_repo_dir: {REPO}\n"
                 f"vault_probe_token: !unsafe '{UNSAFE_SECRET.replace(chr(39), chr(39) * 2)}'\n"
                 + encrypt_string(password_file, VAULTED_SECRET, "vault_probe_password"))
    done = run_audit(tmp_path, vars_text, password_file)
    assert done.returncode == 0, done.stderr[-2000:]
    written = done.stdout + done.stderr + "".join(path.read_text(errors="replace") for path in (tmp_path / "runs").rglob("*")
                                                  if path.is_file())
    assert canary_hits(written, {"UNSAFE": UNSAFE_SECRET, "VAULTED": VAULTED_SECRET}) == []
    assert json.loads(done.stdout)["audit"]["localhost"] == [f"a line holding {MARK} and {MARK}"]


def test_a_vault_value_with_jinja_markers_and_no_unsafe_is_refused_by_name(tmp_path):
    password_file = tmp_path / "vault-pass"
    password_file.write_text("i2m-test-vault-password\n")
    for case, (where, vars_text, inventory_vars) in enumerate([
        ("inventory", f"i2m_repo_dir: {REPO}\n", {"vault_api_key": "abc-{{ 6*7 }}-def"}),
        ("-e", f"i2m_repo_dir: {REPO}\nvault_api_key: 'abc-{{% raw %}}-def'\n", {}),
    ]):
        folder = tmp_path / str(case)
        folder.mkdir()
        done = run_audit(folder, vars_text, password_file, inventory_vars)
        assert done.returncode == 3, (where, done.stderr[-2000:])
        assert f"variable vault_api_key ({where}" in done.stderr and "mark the value !unsafe" in done.stderr, done.stderr
        assert "abc-" not in done.stderr + done.stdout
        assert not (folder / "runs").exists()


def test_a_vault_value_the_password_does_not_decrypt_is_refused_by_name(tmp_path):
    other_password = tmp_path / "other-pass"
    other_password.write_text("another password\n")
    password_file = tmp_path / "vault-pass"
    password_file.write_text("i2m-test-vault-password\n")
    done = run_audit(tmp_path, f"i2m_repo_dir: {REPO}\n" + encrypt_string(other_password, VAULTED_SECRET, "vault_probe_password"),
                     password_file)
    assert done.returncode == 3, done.stderr[-2000:]
    assert "variable vault_probe_password (-e) is a !vault value that --vault-password-file does not decrypt" in done.stderr


def test_env_values_yaml_would_rewrite_are_refused_by_name_and_plain_integers_pass(tmp_path):
    env = yaml.safe_load((REPO / "inventory/local/group_vars/all/env.yml").read_text())["i2m_env"]
    typed = {"PIN": "0123", "VERSION": "1.10", "WINDOW": "1:30", "BIG": "1_000", "WORKERS": "4", "PORT": "8000"}
    vars_file = tmp_path / "vars.yml"
    vars_file.write_text(f"i2m_repo_dir: {REPO}\ni2m_env:\n" + "".join(f"  {key}: {json.dumps(value)}\n" for key, value in env.items())
                         + "".join(f"  {key}: {text}  # typed unquoted\n" for key, text in typed.items()))
    inventory = local_inventory_copy(tmp_path / "inventory")
    done = subprocess.run([str(VENV_BIN / "ansible-playbook"), "playbooks/preflight.yml", "-i", str(inventory), "-e", f"@{vars_file}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "ANSIBLE_NOCOLOR": "1"})
    assert done.returncode != 0
    refused = {key for key in typed if f"{key} is not read back as it was typed" in done.stdout
               or f"{key} must be a string or an integer, not float" in done.stdout}
    assert refused == {"PIN", "VERSION", "WINDOW", "BIG"}, done.stdout[-3000:]
