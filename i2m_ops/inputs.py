"""A run's inputs, checked before any playbook starts. Errors name the input, never a value."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml
from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import VaultLib, get_file_vault_secret, is_encrypted_file

from i2m_ops.errors import CannotStart
from i2m_ops.runner import REPO

STACK_GROUP = "i2m_stack"
SECRET_NAME = re.compile(r"(^vault_|pass|secret|token|_key$|^key$|api_key)", re.IGNORECASE)


def parse_extra_vars(items: list) -> dict:
    """-e values as ansible-playbook takes them: KEY=VALUE pairs, a JSON/YAML mapping or @FILE."""
    merged = {}
    for number, item in enumerate(items, start=1):
        label = f"-e number {number}"
        if item.startswith("@"):
            path = Path(item[1:])
            if not path.is_file():
                raise CannotStart(f"{label}: file {path} not found")
            data = _yaml_mapping(path.read_text(), f"{label} ({path})")
        elif item.lstrip().startswith("{"):
            data = _yaml_mapping(item, label)
        else:
            data = {}
            for pair in shlex.split(item):
                key, sep, value = pair.partition("=")
                if not sep or not key.isidentifier():
                    raise CannotStart(f"{label} is not KEY=VALUE, a JSON/YAML mapping or @FILE")
                data[key] = value
        merged.update(data)
    return merged


def _yaml_mapping(text: str, label: str) -> dict:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise CannotStart(f"{label} is not valid YAML or JSON{where}") from None
    if not isinstance(data, dict):
        raise CannotStart(f"{label} must be a mapping of variable names to values")
    return data


def check_vault_password_file(path: Path | None) -> None:
    if path is not None and not os.access(path, os.R_OK):
        raise CannotStart(f"--vault-password-file {path} cannot be read: check the path and its permissions")


def load_inventory(inventory: Path, vault_password_file: Path | None) -> dict:
    """The inventory as ansible-inventory reads it; it must have hosts in the stack group."""
    if not inventory.exists():
        raise CannotStart(f"inventory {inventory} not found: pass -i with an inventory file or folder")
    command = [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(inventory), "--list"]
    if vault_password_file:
        command += ["--vault-password-file", str(vault_password_file)]
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    problems = [line for line in done.stderr.splitlines() if "ERROR" in line or "Unable to parse" in line]
    if done.returncode != 0:
        if "vault" in done.stderr.lower():
            _raise_for_vaulted_files(inventory, vault_password_file)
        raise CannotStart(f"inventory {inventory} could not be read: {(problems or ['see ansible-inventory'])[0].strip()}")
    data = json.loads(done.stdout)
    if not _group_hosts(data, STACK_GROUP):
        reason = f" ({problems[0].strip()})" if problems else ""
        raise CannotStart(f"inventory {inventory} has no host in the group {STACK_GROUP}{reason}: "
                          f"put the stack's hosts under it (see inventory/production.example)")
    return data


def _raise_for_vaulted_files(inventory: Path, vault_password_file: Path | None) -> None:
    """Names the first vaulted file of the inventory that does not decrypt, and why.

    Ansible's own message ("Decryption failed") names no file. Raises CannotStart naming the
    file when one does not decrypt with the password file (or none was given); returns when
    every whole-file vault decrypts (the caller then reports Ansible's message).
    """
    files = sorted(path for path in ([inventory] if inventory.is_file() else inventory.rglob("*")) if path.is_file())
    vaulted = [path for path in files if _is_vaulted(path)]
    if vaulted and vault_password_file is None:
        raise CannotStart(f"inventory {inventory}: {vaulted[0]} is vaulted and no --vault-password-file was given: "
                          "pass the file holding its vault password")
    if not vaulted:
        return
    secret = get_file_vault_secret(filename=str(vault_password_file), loader=DataLoader())
    secret.load()
    vault = VaultLib([(C.DEFAULT_VAULT_IDENTITY, secret)])
    for path in vaulted:
        try:
            vault.decrypt(path.read_bytes())
        except AnsibleError:
            raise CannotStart(f"inventory {inventory}: {path} did not decrypt with the password in --vault-password-file "
                              f"{vault_password_file} (a wrong password, or the file was encrypted with another one): "
                              "pass the password it was encrypted with") from None


def _is_vaulted(path: Path) -> bool:
    with path.open("rb") as handle:
        return is_encrypted_file(handle)


def _group_hosts(data: dict, group: str) -> list:
    hosts = list(data.get(group, {}).get("hosts", []))
    for child in data.get(group, {}).get("children", []):
        hosts += _group_hosts(data, child)
    return hosts


def secret_values(inventory_data: dict, extra_vars: dict, vault_password_file: Path | None) -> set:
    """Values to redact from everything the CLI writes: secret-looking variables, the vault's."""
    found = set()

    def collect(node, secret_context=False):
        if isinstance(node, dict):
            for key, value in node.items():
                collect(value, secret_context or bool(SECRET_NAME.search(str(key))) or key == "i2m_env_secrets")
        elif isinstance(node, list):
            for value in node:
                collect(value, secret_context)
        elif secret_context and isinstance(node, str) and len(node) >= 4 and "{{" not in node:
            found.add(node)

    collect(inventory_data.get("_meta", {}).get("hostvars", {}))
    collect(extra_vars)
    if vault_password_file:
        found.add(vault_password_file.read_text().strip())
    return {value for value in found if value}
