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
# Ansible forks at most this many workers at once, whatever the fleet's size
MAX_FORKS = 50
JINJA_MARKERS = re.compile(r"\{[{%#]")
SECRET_NAME = re.compile(r"(^vault_|pass|secret|token|_key$|^key$|api_key)", re.IGNORECASE)


class UnsafeText(str):
    """A value marked `!unsafe`: Ansible never templates it."""


class VaultedText(str):
    """A value marked `!vault`: the vault's ciphertext (Ansible does not template what it decrypts)."""


class _ExtraVarsLoader(yaml.SafeLoader):
    """YAML with the two scalar tags ansible-playbook adds to it, `!unsafe` and `!vault`."""


_ExtraVarsLoader.add_constructor("!unsafe", lambda loader, node: UnsafeText(loader.construct_scalar(node)))
_ExtraVarsLoader.add_constructor("!vault", lambda loader, node: VaultedText(loader.construct_scalar(node)))


def parse_extra_vars(items: list) -> dict:
    """-e values as ansible-playbook takes them: KEY=VALUE pairs, a JSON/YAML mapping or @FILE.

    Returns the merged mapping (later items win), `!unsafe` values as UnsafeText and `!vault`
    values as VaultedText. Raises CannotStart naming the item that cannot be read.
    """
    merged = {}
    for number, item in enumerate(items, start=1):
        merged.update(_extra_vars_item(item, f"-e number {number}"))
    return merged


def extra_vars_arguments(items: list, folder: Path, more_vars: dict) -> list:
    """ansible-playbook's -e arguments for the CLI's -e items, in their order, then more_vars.

    An @FILE goes through as it is (its `!unsafe` and `!vault` tags reach Ansible intact); other
    items and more_vars are written to 0600 files in folder, so that no value is ever in a
    process's argument list.
    """
    arguments = []
    for number, item in enumerate([*items, more_vars], start=1):
        if isinstance(item, str) and item.startswith("@"):
            arguments += ["-e", f"@{Path(item[1:]).resolve()}"]
            continue
        path = folder / f"extra-vars-{number}.yml"
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(item if isinstance(item, dict) else _extra_vars_item(item, f"-e number {number}")))
        arguments += ["-e", f"@{path}"]
    return arguments


def _extra_vars_item(item: str, label: str) -> dict:
    if item.startswith("@"):
        path = Path(item[1:])
        if not path.is_file():
            raise CannotStart(f"{label}: file {path} not found")
        return _yaml_mapping(path.read_text(), f"{label} ({path})")
    if item.lstrip().startswith("{"):
        return _yaml_mapping(item, label)
    data = {}
    for pair in shlex.split(item):
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise CannotStart(f"{label} is not KEY=VALUE, a JSON/YAML mapping or @FILE")
        data[key] = value
    return data


def _yaml_mapping(text: str, label: str) -> dict:
    try:
        data = yaml.load(text, Loader=_ExtraVarsLoader)  # a SafeLoader, with two string tags added
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
    vault = _vault(vault_password_file)
    for path in vaulted:
        try:
            vault.decrypt(path.read_bytes())
        except AnsibleError:
            raise CannotStart(f"inventory {inventory}: {path} did not decrypt with the password in --vault-password-file "
                              f"{vault_password_file} (a wrong password, or the file was encrypted with another one): "
                              "pass the password it was encrypted with") from None


def _vault(vault_password_file: Path) -> VaultLib:
    """Ansible's vault with the secret of the password file (run, when it is a script, as Ansible does)."""
    secret = get_file_vault_secret(filename=str(vault_password_file), loader=DataLoader())
    secret.load()
    return VaultLib([(C.DEFAULT_VAULT_IDENTITY, secret)])


def _is_vaulted(path: Path) -> bool:
    with path.open("rb") as handle:
        return is_encrypted_file(handle)


def forks(data: dict) -> int:
    """Ansible's --forks for an inventory (ansible-inventory --list data): one worker per host of
    the stack group, so that a fleet's hosts are all worked on at once, at most MAX_FORKS."""
    return max(1, min(len(set(_group_hosts(data, STACK_GROUP))), MAX_FORKS))


def _group_hosts(data: dict, group: str) -> list:
    hosts = list(data.get(group, {}).get("hosts", []))
    for child in data.get(group, {}).get("children", []):
        hosts += _group_hosts(data, child)
    return hosts


def secret_values(inventory_data: dict, extra_vars: dict, vault_password_file: Path | None) -> set:
    """Values to redact from everything the CLI writes: the values of secret-looking variables
    (whatever characters they hold), every `!vault` value decrypted, the vault password.

    inventory_data is ansible-inventory's --list document; extra_vars is parse_extra_vars's result.
    Raises CannotStart, naming the variable, for a `vault_*` value holding Jinja markers without
    `!unsafe` (Ansible would evaluate it: `abc-{{ 6*7 }}-def` becomes `abc-42-def`) and for a
    `!vault` value that the password file does not decrypt.
    """
    password = vault_password_file.read_text().strip() if vault_password_file else None
    leaves = [(name, f"inventory, host {host}", value)
              for host, hostvars in inventory_data.get("_meta", {}).get("hostvars", {}).items()
              for name, value in _secret_leaves(hostvars)]
    leaves += [(name, "-e", value) for name, value in _secret_leaves(extra_vars)]
    found = {password} if password else set()
    vault = _vault(vault_password_file) if vault_password_file and any(isinstance(leaf[2], VaultedText) for leaf in leaves) else None
    for name, where, value in leaves:
        if isinstance(value, VaultedText):
            found.add(_decrypt(value, vault, f"{name} ({where})"))
        elif isinstance(value, UnsafeText) or not JINJA_MARKERS.search(value):
            found.add(value)
        elif name.startswith("vault_"):
            raise CannotStart(f"variable {name} ({where}) holds Jinja markers ({{{{, {{% or {{#}}) that Ansible would evaluate: "
                              f"mark the value !unsafe (see the README) or remove them")
    return {value for value in found if len(value) >= 4}


def _secret_leaves(node, name: str = "", secret: bool = False):
    """(variable name, value) for each string under a secret-looking name, and each `!vault`
    value wherever it is. Reads ansible-inventory's JSON forms of the tags as well."""
    if isinstance(node, dict) and len(node) == 1 and set(node) <= {"__ansible_unsafe", "__ansible_vault"}:
        node = (UnsafeText if "__ansible_unsafe" in node else VaultedText)(next(iter(node.values())))
    if isinstance(node, dict):
        for key, value in node.items():
            inside = secret or bool(SECRET_NAME.search(str(key))) or key == "i2m_env_secrets"
            yield from _secret_leaves(value, f"{name}.{key}" if name else str(key), inside)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _secret_leaves(value, f"{name}[{index}]", secret)
    elif isinstance(node, VaultedText) or (secret and isinstance(node, str)):
        yield name, node


def _decrypt(ciphertext: str, vault: VaultLib | None, label: str) -> str:
    if vault is None:
        raise CannotStart(f"variable {label} is a !vault value: pass --vault-password-file")
    try:
        return vault.decrypt(ciphertext.strip()).decode()
    except AnsibleError:
        raise CannotStart(f"variable {label} is a !vault value that --vault-password-file does not decrypt: "
                          f"check the password file, or re-encrypt the value with ansible-vault encrypt_string") from None
