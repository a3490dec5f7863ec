"""Filters of the preflight role: the variables a compose model interpolates, and the inputs
that would make compose interpolate them wrongly.

The model is `compose config --no-interpolate`'s output, its YAML text or parsed. Compose's interpolation rules
(https://docs.docker.com/reference/compose-file/interpolation/): `$VAR` and `${VAR}` take the
variable as it is (empty when unset, with only a warning); `${VAR:-default}` and
`${VAR-default}` give a default; `${VAR:?error}` and `${VAR?error}` stop compose when it is unset;
`${VAR:+alt}` and `${VAR+alt}` stand for nothing when it is unset; `$$` is a literal `$`.
Problems name services and keys, never a value.
"""

import io
import re

import yaml

REFERENCE = re.compile(r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<modifier>:?[-?+])?|\$(?P<plain>[A-Za-z_][A-Za-z0-9_]*)")
# Fields whose interpolated text ends up in a command line that a shell or compose splits.
COMMAND_FIELDS = ("command", "entrypoint", "healthcheck")
# Characters that break a shell word or a compose command string unless quoted for it.
SHELL_BREAKING = re.compile(r"[\s'\"$\\`]")


def compose_interpolations(model):
    """Every interpolation in a compose model (a mapping, or its YAML text, read with PyYAML's C
    loader where there is one: Ansible's from_yaml costs ten times more, on every task that
    reads the model): dicts with variable, service ('' outside services), field (the service's
    key, or the top-level key) and needs_value (true for `$VAR`, `${VAR}` and the `?` forms:
    compose has no default for them)."""
    if isinstance(model, str):
        # libyaml reads a plain str or a stream only, and a module's output reaches a filter as a
        # subclass of str (AnsibleUnsafeText on ansible-core 2.17 and 2.18): read it as a stream.
        model = yaml.load(io.StringIO(model), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    found = []
    for section, body in (model or {}).items():
        places = body.items() if section == "services" and isinstance(body, dict) else [("", {section: body})]
        for service, definition in places:
            for field, value in (definition or {}).items():
                for variable, modifier in _references(value):
                    found.append({"variable": variable, "service": service, "field": field,
                                  "needs_value": modifier in ("", "?", ":?")})
    return found


def _references(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _references(key)
            yield from _references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _references(value)
    elif isinstance(node, str):
        for match in REFERENCE.finditer(node):
            if match.group(0) != "$$":
                yield match["braced"] or match["plain"], match["modifier"] or ""


def compose_unset_variables(interpolations, env_keys):
    """Variables that the compose files need a value for and that the env file does not set:
    a sorted list of 'VAR (service: field, ...)' lines."""
    places = {}
    for found in interpolations:
        if found["needs_value"] and found["variable"] not in env_keys:
            places.setdefault(found["variable"], set()).add(f"{found['service'] or 'top level'}: {found['field']}")
    return [f"{variable} ({', '.join(sorted(where))})" for variable, where in sorted(places.items())]


def compose_unsafe_command_values(interpolations, values, secrets=None):
    """Env values (secrets or not: production's postgres healthcheck takes POSTGRES_USER) that
    compose pastes into a command, entrypoint or healthcheck and that hold a character breaking a
    shell word (space, quote, $, backslash, backquote): a sorted list of 'service: field uses KEY'
    lines. A key in secrets wins over the same key in values, as in the env file. Only the values
    of the keys pasted into commands are read: each value of an inventory costs a templating."""
    secrets = secrets or {}
    unsafe = set()
    for found in interpolations:
        variable = found["variable"]
        if found["field"] not in COMMAND_FIELDS or (variable not in secrets and variable not in values):
            continue
        value = secrets[variable] if variable in secrets else values[variable]
        if SHELL_BREAKING.search(str(value)):
            unsafe.add(f"{found['service']}: {found['field']} uses {variable}")
    return sorted(unsafe)


class FilterModule:
    def filters(self):
        return {
            "compose_interpolations": compose_interpolations,
            "compose_unset_variables": compose_unset_variables,
            "compose_unsafe_command_values": compose_unsafe_command_values,
        }
