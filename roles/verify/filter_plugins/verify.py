"""Filters of the verify role. They read `docker inspect` output, which holds secret values,
and return names, states and addresses only: values are compared by SHA-256 fingerprint."""

import hashlib
import re

SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"


def _fingerprint(value):
    return hashlib.sha256(str(value).encode()).hexdigest()


def _by_service(inspected):
    """Each service's container, one-off containers (`compose run`) left out."""
    return {labels[SERVICE_LABEL]: container for container in inspected
            for labels in [container["Config"]["Labels"] or {}]
            if labels.get(SERVICE_LABEL) and labels.get(ONEOFF_LABEL) != "True"}


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
    """One check per service: its container runs and, where it has a healthcheck, is healthy;
    and one failing check per orphan, as compose defines one: a container that compose made
    (it carries a config hash) for the project, whose service is not among services
    (https://docs.docker.com/reference/cli/docker/compose/up/, --remove-orphans). services is
    empty when compose config failed: then no orphan is told."""
    checks = [{"service": service, "check": "container", "item": "orphan",
               "state": f"{containers[service]['name']} runs, but its service is no longer in the compose files", "ok": False}
              for service in sorted(set(containers) - set(services)) if services and containers[service]["config_hash"]]
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


def verify_intended_env(compose_config, narrowing):
    """Per service, the keys of its container's intended environment: every entry of the
    service's `environment` as `compose config` resolves it with the env file (renamed sources,
    literals and per-service subsets included), narrowed to the keys listed in `narrowing` for
    the services it names. Entries without a value (passed through from compose's own
    environment) have no intended value and are left out. Returns {service: [key, ...]}."""
    keys = {}
    for service, definition in sorted((compose_config.get("services") or {}).items()):
        environment = definition.get("environment") or {}
        resolved = sorted(key for key, value in environment.items() if value is not None)
        keys[service] = narrowing[service] if service in narrowing else resolved
    return keys


def verify_env_checks(inspected, compose_config, narrowing):
    """One check per service and key of its intended environment (verify_intended_env): match,
    mismatch, missing (not in the container), empty, or "not in the compose files" for a key
    that `narrowing` names but the service does not set. Values are compared by SHA-256 and
    never returned. Source of the rule: the compose file is what gives each container its
    environment (https://docs.docker.com/compose/how-tos/environment-variables/set-environment-variables/)."""
    containers = _by_service(inspected)
    services = compose_config.get("services") or {}
    checks = []
    for service, keys in verify_intended_env(compose_config, narrowing).items():
        # `compose config` writes a literal $ as $$, so that its output can be read again
        intended = {key: None if value is None else str(value).replace("$$", "$")
                    for key, value in (services[service].get("environment") or {}).items()}
        container = containers.get(service)
        env = dict(item.split("=", 1) for item in container["Config"]["Env"] or []) if container else {}
        for key in keys:
            if intended.get(key) is None:
                state = "not in the compose files"
            elif container is None:
                state = "no container"
            elif key not in env:
                state = "missing"
            elif env[key] == "" and str(intended[key]) != "":
                state = "empty"
            elif _fingerprint(env[key]) == _fingerprint(intended[key]):
                state = "match"
            else:
                state = "mismatch"
            checks.append({"service": service, "check": "env", "item": key, "state": state, "ok": state == "match"})
    return checks


def verify_published_url(published):
    """The URL the host reaches a proxy at, from its published ports ({"443/tcp": ["ip:port"]}):
    https on the port 443 is published on, else http on 80's; "" when neither is. A binding on
    every address (0.0.0.0, ::) is reached as 127.0.0.1."""
    for port, scheme in (("443/tcp", "https"), ("80/tcp", "http")):
        if published.get(port):
            address, _, host_port = published[port][0].rpartition(":")
            host = "127.0.0.1" if address in ("0.0.0.0", "::", "") else address
            return f"{scheme}://{host}:{host_port}"
    return ""


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
            "verify_published_url": verify_published_url,
            "verify_probe_plan": verify_probe_plan,
            "verify_probe_checks": verify_probe_checks,
            "verify_log_checks": verify_log_checks,
            "verify_check_line": verify_check_line,
        }
