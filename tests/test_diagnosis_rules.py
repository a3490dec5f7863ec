"""diagnose's rules on evidence built by hand, for the kinds of fault the catalogue of real
faults (test_diagnosis.py) cannot inject cheaply: a proxy that cannot resolve its upstream or
times out, a proxy pointed at the wrong port, an unhealthy service, compose unable to read its
files, evidence that no rule explains. Pure functions: no engine needed."""

import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "roles/diagnose/filter_plugins"))
sys.path.insert(0, str(REPO / "roles/stack_info/library"))
from compose_stack_info import log_counts  # noqa: E402  (the module that reads the logs)
from diagnose import diagnose_causes, diagnose_proxy_patterns  # noqa: E402  (a role's filter, not a package)

SERVICES = ["postgres", "redis", "backend", "worker", "flower", "nginx"]
DEPENDS_ON = {"backend": ["postgres", "redis"], "worker": ["redis"], "flower": ["redis"], "nginx": ["backend"]}
COMMANDS = {"deploy": "i2m-ops deploy -i inv -l web-1", "remediate": "i2m-ops remediate -i inv -l web-1",
            "compose": "cd /opt/i2m && docker compose -p i2m --env-file /opt/i2m/.env.production"}


def item(service, check, name, state, ok=False, warn=False):
    return {"service": service, "check": check, "item": name, "state": state, "ok": ok, "warn": warn}


def healthy():
    """The evidence of a healthy stack, as diagnose gathers it."""
    evidence = [item(service, "container", "running", "running, healthy", ok=True) for service in SERVICES]
    evidence += [item(service, "env", "API_KEY", "match", ok=True) for service in ("backend", "frontend")]
    evidence += [item(service, "config hash", "compose config", "current", ok=True) for service in SERVICES]
    evidence += [item("-", "env file", "content", "as rendered", ok=True), item("-", "compose config", "files", "resolved", ok=True)]
    for via, service in (("direct", "backend"), ("nginx", "nginx")):
        evidence += [item(service, f"http via {via}", name, "answered 200", ok=True)
                     for name in ("GET /health", "GET /api/v1/health/", "upload with API key")]
    evidence += [item("backend", "logs", pattern, "none", ok=True) for pattern in ("Traceback", "NameError")]
    return evidence


def replaced(evidence, *changes):
    """The evidence with the items of the same service, check and name replaced."""
    keys = {(change["service"], change["check"], change["item"]) for change in changes}
    return [entry for entry in evidence if (entry["service"], entry["check"], entry["item"]) not in keys] + list(changes)


def causes(evidence, proxy_log_values=None, backend_url="http://172.20.0.5:8000"):
    context = {"host": "web-1", "backend": "backend", "proxy": "nginx", "redis": "redis", "backend_urls": [backend_url],
               "depends_on": DEPENDS_ON,
               "containers": {service: {"name": f"i2m-{service}", "user": "app" if service == "backend" else "",
                                        "addresses": {"i2m-backend-network": "172.20.0.5", "i2m-frontend-network": "172.21.0.5"}
                                        if service == "backend" else {}} for service in SERVICES},
               "proxy_log_values": proxy_log_values or {},
               "commands": COMMANDS}
    return diagnose_causes(evidence, context)


NGINX_API_FAILS = [item("nginx", "http via nginx", "GET /api/v1/health/", "answered 502"),
                   item("nginx", "http via nginx", "upload with API key", "answered 502")]


def test_no_fault_only_when_every_piece_of_evidence_passed():
    assert causes(healthy()) == []


def test_a_dependency_down_comes_first_and_what_fails_because_of_it_is_its_consequence():
    evidence = replaced(healthy(), item("redis", "container", "running", "exited"),
                        item("worker", "container", "running", "running, unhealthy"),
                        item("backend", "http via direct", "GET /api/v1/health/", "answered 503"), *NGINX_API_FAILS)
    [found] = causes(evidence)
    assert found["cause"] == "redis is not running as it should (exited): worker fails because of it"
    assert found["command"] == COMMANDS["deploy"] and found["remediation_fixes"]
    assert "backend http via direct GET /api/v1/health/: answered 503" in found["evidence"]


@pytest.mark.parametrize("service", ["worker", "flower", "nginx", "postgres"])
def test_any_service_down_is_named_with_the_command_that_starts_it(service):
    [found] = causes(replaced(healthy(), item(service, "container", "running", "exited")))
    assert found["cause"].startswith(f"{service} is not running as it should") and found["command"] == COMMANDS["deploy"]


def test_an_unhealthy_service_is_recreated_from_a_fresh_build_of_its_own():
    [found] = causes(replaced(healthy(), item("flower", "container", "running", "running, unhealthy")))
    assert found["command"] == f"{COMMANDS['remediate']} --services flower"


@pytest.mark.parametrize("log_values, begins, command", [
    ({"unresolved": ["backend:8000"]}, "nginx cannot resolve the backend's name", ""),
    ({"unresolved_name": ["backend"]}, "nginx cannot resolve the backend's name", ""),
    ({"timeout": ["172.21.0.5:8000"]}, "the backend does not answer the proxy in time", f"{COMMANDS['remediate']} --services backend"),
    ({"refused": ["172.21.0.5:8000"]}, "nginx is refused at the backend's own address", ""),
    ({"refused": ["172.21.0.9:8000"]}, "nginx sends requests to an address the backend no longer has", f"{COMMANDS['compose']} kill -s HUP nginx"),
    ({"unreachable": ["172.21.0.9:8000"]}, "nginx sends requests to an address the backend no longer has", f"{COMMANDS['compose']} kill -s HUP nginx"),
    # the frontend's failures are the frontend's: nginx proxies / there
    ({"refused": ["172.21.0.7:3000"]}, "nginx cannot reach the backend although the backend answers directly", f"{COMMANDS['compose']} kill -s HUP nginx"),
    ({}, "nginx cannot reach the backend although the backend answers directly", f"{COMMANDS['compose']} kill -s HUP nginx"),
], ids=["name-not-resolved", "name-not-resolved-by-a-resolver", "timeout", "refused-at-its-address", "refused-at-an-old-address",
        "no-route-to-an-old-address", "another-upstream-refused", "no-error-logged"])
def test_a_proxy_that_cannot_reach_the_backend_is_told_apart_by_its_own_error(log_values, begins, command):
    [found] = causes(replaced(healthy(), *NGINX_API_FAILS), log_values)
    assert found["cause"].startswith(begins) and found["command"] == command
    assert found["remediation_fixes"] == bool(command)


def test_nginx_error_lines_are_read_for_their_kind_and_upstream():
    lines = "\n".join([
        '2026/12/01 10:00:00 [error] 29#29: *5 connect() failed (111: Connection refused) while connecting to upstream, '
        'client: 172.21.0.1, server: _, request: "GET /api/v1/health/ HTTP/2.0", upstream: "http://172.21.0.9:8000/api/v1/health/"',
        '2026/12/01 10:00:01 [error] 29#29: *7 connect() failed (113: No route to host) while connecting to upstream, '
        'upstream: "http://172.21.0.4:8000/api/v1/upload/"',
        '2026/12/01 10:00:02 [error] 29#29: *9 upstream timed out (110: Connection timed out) while reading response header '
        'from upstream, upstream: "http://172.21.0.5:8000/api/v1/upload/"',
        '2026/12/01 10:00:03 [emerg] 1#1: host not found in upstream "backend:8000" in /etc/nginx/nginx.conf:52'])
    counts, values = log_counts(lines, diagnose_proxy_patterns([]))
    assert values == {"refused": ["172.21.0.9:8000"], "unreachable": ["172.21.0.4:8000"], "timeout": ["172.21.0.5:8000"],
                      "unresolved": ["backend:8000"]}


def test_a_stale_backend_comes_before_what_nginx_logged_while_it_restarted():
    [found] = causes(replaced(healthy(), item("backend", "config hash", "compose config", "differs"), *NGINX_API_FAILS),
                     {"refused": ["172.21.0.9:8000"]})
    assert found["cause"].startswith("stale containers")


def test_stale_containers_by_config_hash_even_when_they_started_after_the_env_file():
    # a value changed in the env file, then `docker restart`: the start time says fresh, the hash does not
    [found] = causes(replaced(healthy(), item("backend", "config hash", "compose config", "differs"),
                              item("backend", "env", "API_KEY", "mismatch")))
    assert found["cause"].startswith("stale containers") and found["command"] == COMMANDS["deploy"]
    assert found["evidence"][0] == "backend config hash compose config: differs"


def test_a_stale_service_that_fails_is_stale_not_down():
    [found] = causes(replaced(healthy(), item("worker", "config hash", "compose config", "differs"),
                              item("worker", "container", "running", "running, unhealthy")))
    assert found["cause"].startswith("stale containers")


@pytest.mark.parametrize("env_state, config_state, begins", [
    ("mismatch", "differs", "the env file on the host differs from the inventory (RATE_LIMIT_PER_MINUTE) and the containers do not run"),
    ("match", "current", "the inventory is ahead of the host (RATE_LIMIT_PER_MINUTE)"),
])
def test_the_env_file_off_the_inventory_is_told_apart_by_direction(env_state, config_state, begins):
    [found] = causes(replaced(healthy(), item("-", "env file", "RATE_LIMIT_PER_MINUTE", "set otherwise in the file on the host"),
                              item("backend", "env", "API_KEY", env_state, ok=env_state == "match"),
                              item("backend", "config hash", "compose config", config_state, ok=config_state == "current")))
    assert found["cause"].startswith(begins) and found["command"] == COMMANDS["deploy"]
    assert "never a compose command with the file as it is" in found["action"]


def test_compose_unable_to_read_its_files_gets_no_command_that_would_reuse_them():
    [found] = causes(replaced(healthy(), item("-", "compose config", "files", "compose config failed (exit 15)")))
    assert found["cause"] == "compose cannot resolve the compose files with the env file" and found["command"] == ""


def test_a_service_that_crashes_at_start_on_its_code_gets_no_command():
    [found] = causes(replaced(healthy(), item("backend", "container", "running", "restarting"),
                              item("backend", "logs", "ImportError", "3 in recent lines", ok=True, warn=True)))
    assert found["cause"].startswith("backend crashes at start on an error in the application code")
    assert found["command"] == "" and not found["remediation_fixes"]


def test_a_name_error_at_request_time_names_no_crash_at_start():
    # diagnose's own upload provokes production's NameError; the backend is unhealthy for another reason
    found = causes(replaced(healthy(), item("backend", "container", "running", "running, unhealthy"),
                            item("backend", "logs", "NameError", "1 in recent lines", ok=True, warn=True)))
    assert found[0]["cause"].startswith("backend is not running as it should")


def test_a_code_bug_at_request_time_gets_no_command():
    [found] = causes(replaced(healthy(), item("backend", "http via direct", "upload with API key", "answered 500"),
                              item("backend", "logs", "NameError", "2 in recent lines", ok=True, warn=True)))
    assert found["cause"].startswith("a bug in the application code at request time") and found["command"] == ""
    assert found["remediation_fixes"] is False


def test_evidence_no_rule_explains_is_an_unexplained_cause_beside_the_explained_ones():
    found = causes(replaced(healthy(), item("redis", "container", "running", "exited"),
                            item("-", "drift", "something new", "a state no rule knows")))
    assert [cause["cause"].split(" ")[0] for cause in found] == ["redis", "unexplained:"]
    assert found[1]["evidence"] == ["- drift something new: a state no rule knows"] and found[1]["command"] == ""
