"""Filters of the verify role. They read the stack as the stack_info role's compose_stack_info
module returns it (environment values as keyed fingerprints, never values) and return checks
{service, check, item, state, ok}: names, states and addresses only."""


def _by_service(containers):
    """Each service's container (the last of a scaled service's); compose_stack_info already
    leaves one-off containers (`compose run`) out."""
    return {container["service"]: container for container in containers if container["service"]}


def verify_containers(containers):
    """Per service: the compose_stack_info summary of its container (name, status, health, start
    time, image, config hash, network addresses, published ports), its environment left out."""
    return {service: {key: value for key, value in container.items() if key != "env"}
            for service, container in _by_service(containers).items()}


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


def verify_intended_env(services, narrowing):
    """Per service, the keys of its container's intended environment: every entry of the
    service's `environment` as `compose config` resolves it with the env file (renamed sources,
    literals and per-service subsets included), narrowed to the keys listed in `narrowing` for
    the services it names. Entries without a value (passed through from compose's own
    environment) have no intended value and are left out. services: compose_stack_info's
    model.services. Returns {service: [key, ...]}."""
    keys = {}
    for service, definition in sorted(services.items()):
        resolved = sorted(key for key, value in definition["environment"].items() if value is not None)
        keys[service] = narrowing[service] if service in narrowing else resolved
    return keys


def verify_env_checks(containers, services, narrowing):
    """One check per service and key of its intended environment (verify_intended_env): match,
    mismatch, missing (not in the container), empty, or "not in the compose files" for a key
    that `narrowing` names but the service does not set. containers and services are
    compose_stack_info's, whose fingerprints ("" for an empty value) are compared. Source of the
    rule: the compose file is what gives each container its environment
    (https://docs.docker.com/compose/how-tos/environment-variables/set-environment-variables/)."""
    by_service = _by_service(containers)
    checks = []
    for service, keys in verify_intended_env(services, narrowing).items():
        intended = services[service]["environment"]
        container = by_service.get(service)
        env = container["env"] if container else {}
        for key in keys:
            if intended.get(key) is None:
                state = "not in the compose files"
            elif container is None:
                state = "no container"
            elif key not in env:
                state = "missing"
            elif env[key] == "" and intended[key] != "":
                state = "empty"
            elif env[key] == intended[key]:
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
    """One check per probe, from the http_probes module's results: the status answered against
    the ones expected."""
    return [{"service": probe["service"], "check": f"http via {probe['via']}", "item": probe["name"],
             "state": f"answered {probe['status']}" if probe["status"] > 0 else f"no answer ({probe.get('error') or 'no reason given'})",
             "ok": probe["ok"]} for probe in probe_results]


def verify_log_checks(log_counts, fail_on_findings, patterns=None):
    """One check per service and pattern (of `patterns` only, when given), from
    compose_stack_info's {service: {pattern: count}}: counts only, never lines."""
    return [{"service": service, "check": "logs", "item": pattern, "state": f"{count} in recent lines" if count else "none",
             "ok": count == 0 or not fail_on_findings, "warn": count > 0}
            for service, counts in sorted(log_counts.items()) for pattern, count in counts.items()
            if patterns is None or pattern in patterns]


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
