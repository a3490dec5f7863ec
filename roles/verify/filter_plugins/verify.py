"""Filters of the verify role. They read `docker inspect` output, which holds secret values,
and return names, states and addresses only: values are compared by SHA-256 fingerprint."""

import hashlib
import re

SERVICE_LABEL = "com.docker.compose.service"


def _fingerprint(value):
    return hashlib.sha256(str(value).encode()).hexdigest()


def _by_service(inspected):
    return {c["Config"]["Labels"].get(SERVICE_LABEL): c for c in inspected if c["Config"]["Labels"].get(SERVICE_LABEL)}


def verify_containers(inspected):
    """Per service: container name, state, health, start time, network addresses, published ports."""
    summary = {}
    for service, container in _by_service(inspected).items():
        state = container["State"]
        ports = container["NetworkSettings"].get("Ports") or {}
        summary[service] = {
            "name": container["Name"].lstrip("/"),
            "status": state.get("Status"),
            "health": (state.get("Health") or {}).get("Status", "none"),
            "started_at": state.get("StartedAt"),
            "image_id": container["Image"],
            "image_tag": container["Config"]["Image"],
            "config_hash": container["Config"]["Labels"].get("com.docker.compose.config-hash", ""),
            "addresses": {net: info.get("IPAddress") for net, info in container["NetworkSettings"]["Networks"].items()},
            "published": {port: [f"{b['HostIp']}:{b['HostPort']}" for b in bindings] for port, bindings in ports.items() if bindings},
        }
    return summary


def verify_service_checks(containers, services):
    """One check per service: its container runs and, where it has a healthcheck, is healthy."""
    checks = []
    for service in services:
        container = containers.get(service)
        if container is None:
            state, ok = "no container", False
        elif container["health"] == "none":
            state, ok = container["status"], container["status"] == "running"
        else:
            state = f"{container['status']}, {container['health']}"
            ok = container["status"] == "running" and container["health"] == "healthy"
        checks.append({"service": service, "check": "container", "item": "running", "state": state, "ok": ok})
    return checks


def verify_env_checks(inspected, intended, service_keys):
    """One check per service and key: match, mismatch, missing (not in the container) or empty."""
    containers = _by_service(inspected)
    checks = []
    for service, keys in service_keys.items():
        container = containers.get(service)
        env = dict(item.split("=", 1) for item in container["Config"]["Env"]) if container else {}
        for key in keys:
            if key not in intended:
                state = "not in inventory"
            elif container is None:
                state = "no container"
            elif key not in env:
                state = "missing"
            elif env[key] == "" and str(intended.get(key, "")) != "":
                state = "empty"
            elif _fingerprint(env[key]) == _fingerprint(intended.get(key, "")):
                state = "match"
            else:
                state = "mismatch"
            checks.append({"service": service, "check": "env", "item": key, "state": state, "ok": state == "match"})
    return checks


def verify_probe_plan(bases, health_paths, upload_path, with_upload):
    """Every request to make: health paths, then an upload with and one without the API key."""
    probes = [{"name": f"GET {path}", "path": path, "method": "GET", "auth": False, "expect": [200]} for path in health_paths]
    if with_upload:
        probes.append({"name": "upload with API key", "path": upload_path, "method": "POST", "auth": True, "expect": [200, 201, 202]})
        probes.append({"name": "upload without key", "path": upload_path, "method": "POST", "auth": False, "expect": [401, 403]})
    return [{**probe, "via": base["via"], "service": base["service"], "url": base["url"] + probe["path"]} for base in bases for probe in probes]


def verify_probe_checks(probe_results):
    """One check per probe, from the uri results: the status answered against the one expected."""
    checks = []
    for result in probe_results:
        probe, status = result["item"], result.get("status", -1)
        state = f"answered {status}" if status and status > 0 else "no answer"
        checks.append({"service": probe["service"], "check": f"http via {probe['via']}", "item": probe["name"],
                       "state": state, "ok": status in probe["expect"]})
    return checks


def verify_log_checks(log_results, patterns, fail_on_findings):
    """One check per service and pattern, from `docker logs` results: counts only, never lines."""
    checks = []
    for result in log_results:
        text = f"{result.get('stdout', '')}\n{result.get('stderr', '')}"
        for pattern in patterns:
            count = len(re.findall(pattern, text))
            checks.append({"service": result["item"], "check": "logs", "item": pattern,
                           "state": f"{count} in recent lines" if count else "none",
                           "ok": count == 0 or not fail_on_findings, "warn": count > 0})
    return checks


def verify_check_line(check):
    """A check as one line: an icon, the service, what was checked and the state found."""
    icon = "❌" if not check["ok"] else "⚠️" if check.get("warn") else "✅"
    return f"{icon} {check['service']} {check['check']} {check['item']}: {check['state']}"


class FilterModule:
    def filters(self):
        return {
            "verify_containers": verify_containers,
            "verify_service_checks": verify_service_checks,
            "verify_env_checks": verify_env_checks,
            "verify_probe_plan": verify_probe_plan,
            "verify_probe_checks": verify_probe_checks,
            "verify_log_checks": verify_log_checks,
            "verify_check_line": verify_check_line,
        }
