"""Filters of the diagnose role: the likely causes of a failing stack, from its evidence.

Evidence items have the verify role's shape {service, check, item, state, ok, warn}. Each rule
stands for a kind of fault, not one case: a service that does not run or is unhealthy (any
service, its dependencies first), the env file on the host off the inventory (told apart by
direction), containers behind their configuration, a proxy that cannot reach its upstream (told
apart by the proxy's own error), a mount the service cannot write, a code bug, compose unable to
read its files. A rule names the evidence it rests on and the evidence it explains; failing
evidence that no rule explains is a cause of its own, "unexplained". A cause is {cause, score,
evidence, action, command, remediation_fixes}: `command` runs as printed and clears the fault,
or is "" where no command of this tool does (a code bug, a compose file to fix by hand).
"""

import re
from urllib.parse import urlsplit

# Raised when the code is loaded, so at start: a container that fails with one in its log
# crashes on its code. A NameError is raised where the code runs (production's was at request
# time), so it names no crash at start.
START_ERRORS = ("ImportError", "ModuleNotFoundError", "SyntaxError")
REQUEST_ERRORS = ("Traceback", "NameError") + START_ERRORS
STALE = ("config hash", "started after env file", "image", "env")
# nginx's error log (https://nginx.org/en/docs/http/ngx_http_upstream_module.html): each kind of
# failure told by nginx's own words, its named group taking the upstream the line names
_UPSTREAM = r'.*?upstream: "[a-z]+://(?P<{}>[^/"]+)'
PROXY_ERRORS = {
    "refused": r"connect\(\) failed \(111: Connection refused\) while connecting to upstream" + _UPSTREAM.format("refused"),
    "unreachable": r"connect\(\) failed \(11[03]: [^)]*\) while connecting to upstream" + _UPSTREAM.format("unreachable"),
    "timeout": r"upstream timed out \(110: [^)]*\) while (?:reading|connecting)" + _UPSTREAM.format("timeout"),
    "unresolved": r'host not found in upstream "(?P<unresolved>[^"]+)"|(?P<unresolved_name>[\w.-]+) could not be resolved',
}
STOPPED = ("no container", "exited", "created", "dead", "paused")


def diagnose_proxy_patterns(patterns):
    """patterns, then those of each kind of PROXY_ERRORS, read in the proxy's log lines: the
    values of their named groups (the upstream each line names) come back from the log read."""
    return list(patterns) + list(PROXY_ERRORS.values())


def _proxy_failures(log_values, ports):
    """{kind: [upstream, ...]} of PROXY_ERRORS, from the proxy's log read (its named groups'
    values), only the upstreams at one of `ports` (the backend's): nginx also proxies elsewhere."""
    failures = {}
    for kind in PROXY_ERRORS:
        found = log_values.get(kind, []) + (log_values.get("unresolved_name", []) if kind == "unresolved" else [])
        failures[kind] = [upstream for upstream in found if ":" not in upstream or upstream.rsplit(":", 1)[1] in ports]
    return failures


def _key(item):
    return (item["service"], item["check"], item["item"])


def _line(item):
    return f"{item['service']} {item['check']} {item['item']}: {item['state']}"


class _Evidence:
    """The evidence, with the questions the rules ask of it."""

    def __init__(self, items):
        self.items = items
        self.failing = [item for item in items if not item["ok"]]

    def failed(self, check=None, service=None, states=None):
        return [item for item in self.failing if (check is None or item["check"] == check)
                and (service is None or item["service"] == service)
                and (states is None or any(item["state"].startswith(state) for state in states))]

    def logged(self, service, patterns):
        return [item for item in self.items if item["check"] == "logs" and item["service"] == service
                and item["item"] in patterns and item.get("warn")]

    def http(self, via=None):
        return [item for item in self.failing if item["check"].startswith("http via") and (via is None or item["check"] == f"http via {via}")]


def _down_services(evidence, depends_on, stale_services):
    """Failing services as ({root: consequences}, {service: its failing container item}): a root
    is a service whose dependencies all run and whose own configuration is current (a stale one
    fails because of that); the services that fail because one of theirs does are its
    consequences."""
    failing = {item["service"]: item for item in evidence.failed("container") if item["item"] == "running"}

    def needs(service, seen=()):
        direct = set(depends_on.get(service, []))
        return direct.union(*(needs(dep, seen + (service,)) for dep in direct if dep not in seen))

    roots = [service for service in failing if not needs(service) & set(failing) and service not in stale_services]
    return {root: [failing[s] for s in failing if s != root and root in needs(s)] for root in sorted(roots)}, failing


def diagnose_causes(items, context):
    """The likely causes, most likely first; [] when every piece of evidence passed.

    context: host, the services by role (backend, proxy, redis), depends_on ({service:
    [service]}, from compose's model), containers ({service: {name, user, addresses}}),
    proxy_log_values (the named groups' values of diagnose_proxy_patterns in the proxy's log lines
    since the probes began: the upstreams each kind of error names), backend_urls (where the direct
    probes reached the backend, http://address:port), and the commands
    (deploy, remediate: `i2m-ops ...` for this host; compose: the stack's compose command with its
    env file, `cd DIR && ...`)."""
    evidence = _Evidence(items)
    commands, backend, proxy = context["commands"], context["backend"], context["proxy"]
    containers = context["containers"]
    causes, explained = [], set()

    def cause(name, score, rests_on, explains, action, command, fixes):
        causes.append({"cause": name, "score": score, "evidence": [_line(item) for item in rests_on],
                       "action": action, "command": command, "remediation_fixes": fixes})
        explained.update(_key(item) for item in rests_on + explains)

    def logs_command(service):
        if service in containers:
            return f"docker logs {containers[service]['name']} --tail 100"
        return f"{commands['compose']} logs --tail 100 {service}"

    config = evidence.failed("compose config")
    env_file_on_disk = evidence.failed("env file on disk")
    env_file_keys = evidence.failed("env file")
    malformed = [item for item in env_file_on_disk if item["state"].startswith(("another assignment glued", "not KEY=VALUE"))]
    malformed += [item for item in env_file_keys if re.match(r"set \d+ times|the file on the host differs", item["state"])]
    stale_items = [item for check in STALE for item in evidence.failed(check)]
    http = evidence.http()
    roots, failing_services = _down_services(evidence, context["depends_on"], {item["service"] for item in stale_items})

    # A service that does not start because of its own code: nothing but a code fix helps.
    for service in list(roots):
        code_errors = evidence.logged(service, START_ERRORS)
        down = failing_services[service]
        if code_errors:
            cause(f"{service} crashes at start on an error in the application code ({', '.join(i['item'] for i in code_errors)}): "
                  "a rebuild of the same code will not fix it, and remediation would only restart the crash", 98,
                  [down] + code_errors, roots.pop(service) + http + stale_items,
                  f"Read the traceback: `{logs_command(service)}`; fix the code, then deploy the fixed build "
                  f"(`{commands['remediate']}`).", "", False)

    # The env file on the host, against what the inventory renders now.
    if malformed:
        cause("the env file on the host is not the one the inventory renders: it was edited there (a malformed line, "
              "a key set twice, stray lines or line endings), and compose reads it as it is", 96,
              malformed, env_file_on_disk + env_file_keys + config + stale_items + http,
              f"Render the whole env file from the inventory again and recreate what differs: `{commands['deploy']}`.",
              commands["deploy"], True)
    elif env_file_keys or env_file_on_disk:
        differing = env_file_keys + env_file_on_disk
        names = ", ".join(sorted({item["item"] for item in differing}))
        if evidence.failed("env") or evidence.failed("config hash"):
            name = (f"the env file on the host differs from the inventory ({names}) and the containers do not run what it says: "
                    "it was changed on the host after they started (by hand), or rendered without recreating them")
        else:
            name = (f"the inventory is ahead of the host ({names}): the containers run what the env file on the host says, "
                    "and the inventory holds values not deployed yet (a rotated secret), or the file was edited and the "
                    "stack recreated by hand")
        cause(name, 94, differing, config + evidence.failed("compose variables") + stale_items + http,
              f"Render the env file from the inventory and recreate what it changes: `{commands['deploy']}` "
              "(never a compose command with the file as it is on the host).", commands["deploy"], True)

    redis_rejects = [item for item in evidence.failing if item["check"] == "redis auth" and item["state"] == "rejected"]
    if redis_rejects:
        redis = context["redis"]
        cause("the redis password in the env file no longer matches the running redis (redis started with another one)", 92,
              redis_rejects + evidence.failed("config hash", redis), stale_items + http + evidence.logged(backend, ["WRONGPASS|NOAUTH|AuthenticationError|invalid password"]),
              f"Recreate redis and its clients from the env file (the data volume is kept): `{commands['deploy']}`.",
              commands["deploy"], True)

    # Containers behind the env file and compose files that are right: config hash first, then
    # start time, then what they carry.
    if stale_items and not (malformed or env_file_keys or env_file_on_disk or redis_rejects):
        empty = [item for item in evidence.failed("env") if item["state"] == "empty"]
        rests_on = evidence.failed("config hash") + evidence.failed("started after env file") + evidence.failed("image") + evidence.failed("env")
        stale_services = sorted({item["service"] for item in stale_items})
        if len(empty) >= 2 and len(empty) == len(evidence.failed("env")):
            name = ("the containers were started without --env-file: their interpolated values are empty "
                    f"({', '.join(stale_services)})")
        else:
            name = ("stale containers: they run with a configuration other than the one the compose files and the env file "
                    f"give now ({', '.join(stale_services)}), so not with the current values")
        cause(name, 88, rests_on, [failing_services[s] for s in stale_services if s in failing_services] + http
              + [item for item in evidence.failing if item["service"] in stale_services],
              f"Recreate them from the env file and compose files as they are: `{commands['deploy']}`.", commands["deploy"], True)

    # Services down, dependencies first, with what fails because of them.
    for service, consequences in roots.items():
        down = failing_services[service]
        stopped = down["state"].split(",")[0] in STOPPED
        upstream = [item for item in http if service != proxy or item["check"] == "http via nginx"]
        affected = {service} | {item["service"] for item in consequences}
        own = [item for item in evidence.failing if item["service"] in affected]
        if stopped:
            command = commands["deploy"]
            action = f"Start it again (compose up -d, after rendering the env file): `{command}`."
        else:
            command = f"{commands['remediate']} --services {service}"
            action = f"Recreate it from a fresh build: `{command}`; if it stays unhealthy, read `{logs_command(service)}`."
        cause(f"{service} is not running as it should ({down['state']})"
              + (f": {', '.join(sorted(item['service'] for item in consequences))} "
                 f"{'fails' if len(consequences) == 1 else 'fail'} because of it" if consequences else ""),
              90, [down] + consequences + upstream, own, action, command, True)

    # The proxy runs, but cannot reach the backend: its own error says why.
    nginx_api = [item for item in evidence.http("nginx") if "/api/" in item["item"] or "upload" in item["item"]]
    stale_services = {item["service"] for item in stale_items}
    if nginx_api and not {backend, proxy} & (set(failing_services) | stale_services):
        # the backend's port where the direct probes reached it, at each of its addresses (nginx
        # reaches it on a network of its own)
        ports = {str(urlsplit(url).port) for url in context["backend_urls"]}
        addresses = {f"{address}:{port}" for address in (containers.get(backend, {}).get("addresses") or {}).values() if address
                     for port in ports}
        failures = _proxy_failures(context["proxy_log_values"], ports)
        failed_at = failures["refused"][-1:] + failures["unreachable"][-1:]
        reload = f"{commands['compose']} kill -s HUP {proxy}"
        direct_ok = not evidence.http("direct")
        if failed_at and not set(failed_at) & addresses:
            cause(f"{proxy} sends requests to an address the backend no longer has ({failed_at[-1]}; the backend is at "
                  f"{', '.join(sorted(addresses)) or 'no address'}): {proxy} resolved it when it started, and the backend was recreated since",
                  89, nginx_api, [], f"Reload {proxy}, which resolves its upstreams again: `{reload}` "
                  f"(`{commands['remediate']}` reloads it too).", reload, True)
        elif failures["unresolved"]:
            cause(f"{proxy} cannot resolve the backend's name (its upstream's host name is not a service on its network)", 87,
                  nginx_api, [], f"Check the upstream names in {proxy}'s configuration against the compose services and networks.", "", False)
        elif failures["timeout"]:
            command = f"{commands['remediate']} --services {backend}"
            cause("the backend does not answer the proxy in time (upstream timed out): it hangs or is overloaded", 87,
                  nginx_api, [], f"Read `{logs_command(backend)}`, then recreate it: `{command}`.", command, True)
        elif failures["refused"] and direct_ok:
            cause(f"{proxy} is refused at the backend's own address, where the backend answers at {', '.join(sorted(addresses))}: "
                  f"{proxy}'s configuration points at another port", 86, nginx_api, [],
                  f"Check the upstream's port in {proxy}'s configuration.", "", False)
        elif direct_ok:
            cause(f"{proxy} cannot reach the backend although the backend answers directly", 84, nginx_api, [],
                  f"Reload {proxy}: `{reload}`; if that does not help, read `{logs_command(proxy)}`.", reload, True)

    unwritable = [item for item in evidence.failing if item["check"] == "uploads writable"]
    if unwritable:
        path, container = unwritable[0]["item"], containers.get(backend, {})
        owner = container.get("user") or "root"
        command = f"docker exec -u 0 {container.get('name', backend)} sh -c 'chown -R {owner} {path} && chmod -R u+rwX {path}'"
        cause(f"the backend's user ({owner}) cannot write {path}, a volume: uploads fail", 80, unwritable,
              [item for item in http if "upload" in item["item"]] + evidence.logged(backend, REQUEST_ERRORS),
              f"Give the backend's user the volume back: `{command}`.", command, False)

    request_bugs = evidence.logged(backend, REQUEST_ERRORS)
    failing_requests = [item for item in http if "answered 500" in item["state"] and _key(item) not in explained]
    if request_bugs and failing_requests:
        cause("a bug in the application code at request time (a traceback in the backend's log when it answers 500): "
              "no remediation fixes it, the code must change", 75, failing_requests + request_bugs, [],
              f"Read the traceback: `{logs_command(backend)}`; fix the code and deploy the fixed build.", "", False)

    if config and not malformed:
        cause("compose cannot resolve the compose files with the env file", 70, config, [],
              f"See compose's own error: `{commands['compose']} config --quiet`; fix what it names.", "", False)

    unexplained = [item for item in evidence.failing if _key(item) not in explained]
    if unexplained:
        cause("unexplained: some evidence failed, and no known kind of fault matches it", 10, unexplained, [],
              "Read the failing evidence above; `i2m-ops verify` shows the checks one by one.", "", False)
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


def diagnose_depends_on(services):
    """{service: [the services it depends on]} from compose_stack_info's model.services."""
    return {service: definition["depends_on"] for service, definition in services.items()}


class FilterModule:
    def filters(self):
        return {
            "diagnose_causes": diagnose_causes,
            "diagnose_env_file_items": diagnose_env_file_items,
            "diagnose_unset_variables": diagnose_unset_variables,
            "diagnose_proxy_patterns": diagnose_proxy_patterns,
            "diagnose_depends_on": diagnose_depends_on,
        }
