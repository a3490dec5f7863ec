"""Filters of the diagnose role: rank the likely causes of a failing stack from its evidence.

Evidence items have the verify role's shape {service, check, item, state, ok, warn}. A cause is
{cause, score, evidence, action, remediation_fixes}; the highest score is the most likely.
"""

import re

CODE_ERRORS = ("ImportError", "ModuleNotFoundError", "NameError", "SyntaxError")


def _failing(evidence, check=None, service=None):
    return [item for item in evidence if not item["ok"] and (check is None or item["check"] == check)
            and (service is None or item["service"] == service)]


def _logged(evidence, service, patterns):
    return [item for item in evidence if item["check"] == "logs" and item["service"] == service
            and item["item"] in patterns and item.get("warn")]


def _line(item):
    return f"{item['service']} {item['check']} {item['item']}: {item['state']}"


def diagnose_causes(evidence, backend, nginx, redis, remediate_command, logs_command):
    """The likely causes, most likely first; an empty list when nothing is wrong."""
    causes = []

    def cause(name, score, items, action, fixes):
        causes.append({"cause": name, "score": score, "evidence": [_line(item) for item in items],
                       "action": action, "remediation_fixes": fixes})

    backend_down = _failing(evidence, "container", backend)
    code_errors = _logged(evidence, backend, CODE_ERRORS)
    if backend_down and code_errors:
        cause("the backend crashes at start on an error in the application code (import error): a rebuild of the same "
              "code will not fix it, and remediation would only restart the crash", 100, backend_down + code_errors,
              f"Read the traceback: `{logs_command}`; fix the import in the code, then deploy the fixed build.", False)
    env_file = _failing(evidence, "env file on disk")
    glued = [item for item in env_file if item["state"].startswith("another assignment glued")]
    if glued:
        cause("a malformed line in the env file: a value with another KEY=value glued on, so both keys are wrong", 95,
              glued, f"Render the whole env file again from the inventory and recreate the stack: `{remediate_command}`", True)
    absent = [item for item in env_file if item["state"] in ("missing", "empty", "file missing")]
    if absent:
        cause("a required key is missing or empty in the env file", 90, absent,
              f"Render the env file from the inventory and recreate the stack: `{remediate_command}`", True)
    redis_rejects = [item for item in evidence if item["check"] == "redis auth" and item["state"] == "rejected"]
    if redis_rejects:
        cause("the redis password in the env file no longer matches the running redis (redis started with an older one)",
              88, redis_rejects + _failing(evidence, "env", redis),
              f"Recreate redis and its clients with the env file (the data volume is kept): `{remediate_command}`", True)
    empty_env = [item for item in _failing(evidence, "env") if item["state"] == "empty"]
    if len(empty_env) >= 2 and not absent:
        cause("the containers were started without --env-file: their interpolated values are empty", 86, empty_env,
              f"Recreate the stack with the env file: `{remediate_command}`", True)
    nginx_api = [item for item in _failing(evidence, "http via nginx", nginx) if "/api/" in item["item"] or "upload" in item["item"]]
    direct_ok = not _failing(evidence, "http via direct", backend) and not backend_down
    if nginx_api and backend_down and not code_errors:
        cause("nginx cannot reach the backend: the backend is not running", 85, nginx_api + backend_down,
              f"Start the backend again: `{remediate_command}`", True)
    elif nginx_api and direct_ok:
        cause("nginx cannot reach the backend although the backend answers directly: nginx still sends requests to "
              "an address it resolved at start (the backend was recreated since), or its configuration points elsewhere",
              84, nginx_api + _failing(evidence, "env", nginx), f"Recreate the stack, which reloads nginx: `{remediate_command}`", True)
    stale = [item for item in _failing(evidence, "env") if item["state"] == "mismatch"] + _failing(evidence, "started after env file")
    if stale and not redis_rejects and len(empty_env) < 2:
        cause("stale containers: they run with the environment of before the env file last changed", 80, stale,
              f"Recreate the stack with the current env file: `{remediate_command}`", True)
    unwritable = [item for item in evidence if item["check"] == "uploads writable" and not item["ok"]]
    if unwritable:
        cause("the uploads directory is not writable by the backend", 60, unwritable,
              "Check the volume's ownership: `docker exec <backend> ls -ld /data/uploads`", False)
    unexplained = [item for item in evidence if not item["ok"]]
    if unexplained and not causes:
        cause("unexplained: some evidence failed, and no known cause matches it", 10, unexplained,
              "Read the failing evidence above; `i2m-ops verify` shows the checks one by one.", False)
    return sorted(causes, key=lambda item: -item["score"])


def diagnose_env_file_items(text, required_keys, known_keys):
    """The env file on disk read as compose would see its lines: missing, empty, glued, malformed."""
    if text is None:
        return [{"service": "-", "check": "env file on disk", "item": "file", "state": "file missing", "ok": False}]
    values, items = {}, []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key.strip()):
            items.append({"service": "-", "check": "env file on disk", "item": f"line {number}", "state": "not KEY=VALUE", "ok": False})
            continue
        values[key.strip()] = value.strip().strip("'\"")
    for key in required_keys:
        state = "missing" if key not in values else "empty" if not values[key] else "set"
        items.append({"service": "-", "check": "env file on disk", "item": key, "state": state, "ok": state == "set"})
    for key, value in sorted(values.items()):
        glued = sorted(other for other in known_keys if other != key and f"{other}=" in value)
        if glued:
            items.append({"service": "-", "check": "env file on disk", "item": key,
                          "state": f"another assignment glued on ({', '.join(glued)}=)", "ok": False})
    return items


def diagnose_unset_variables(names):
    """Variables the compose files use that the env file does not set, as compose warned of them
    ("The X variable is not set", read by compose_stack_info)."""
    return [{"service": "-", "check": "compose variables", "item": name, "state": "not set: interpolates to empty", "ok": False}
            for name in names] or [{"service": "-", "check": "compose variables", "item": "all", "state": "set", "ok": True}]


class FilterModule:
    def filters(self):
        return {
            "diagnose_causes": diagnose_causes,
            "diagnose_env_file_items": diagnose_env_file_items,
            "diagnose_unset_variables": diagnose_unset_variables,
        }
