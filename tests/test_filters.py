"""The roles' filters on inputs shaped like `docker inspect`, `docker image inspect` and
`compose config --format json` output: every way a compose file names an image, and every kind
of environment entry production's compose file has, every form of compose's interpolation. Pure functions: no engine needed."""

import sys

import pytest
import yaml
from conftest import REPO

sys.path.insert(0, str(REPO / "roles/drift/filter_plugins"))
sys.path.insert(0, str(REPO / "roles/verify/filter_plugins"))
sys.path.insert(0, str(REPO / "roles/preflight/filter_plugins"))
sys.path.insert(0, str(REPO / "roles/stack_info/library"))
from compose_interpolation import (compose_interpolations, compose_unsafe_command_values,  # noqa: E402
                                   compose_unset_variables)
from drift import drift_image_items, drift_image_reference  # noqa: E402  (roles' filters, not a package)
from compose_stack_info import container_summary, fingerprint, lock_state, model_services  # noqa: E402  (the module's pure functions)
from verify import verify_env_checks, verify_service_checks  # noqa: E402


@pytest.mark.parametrize("name, reference", [
    ("image2model-backend", ("tag", "image2model-backend:latest")),  # build: without image:
    ("redis:7-alpine", ("tag", "redis:7-alpine")),
    ("nginx", ("tag", "nginx:latest")),
    ("docker.io/library/postgres:15", ("tag", "postgres:15")),
    ("registry.example:5000/team/app", ("tag", "registry.example:5000/team/app:latest")),
    ("nginx@sha256:0123abcd", ("digest", "nginx@sha256:0123abcd")),
    ("nginx:1.27@sha256:0123abcd", ("digest", "nginx@sha256:0123abcd")),
])
def test_image_reference_is_normalised_as_docker_lists_it(name, reference):
    assert drift_image_reference(name) == reference


def container(image_name, image_id):
    return {"image_name": image_name, "image_id": image_id}


IMAGES = [{"Id": "sha256:backend", "RepoTags": ["image2model-backend:latest"], "RepoDigests": []},
          {"Id": "sha256:nginx", "RepoTags": ["nginx:latest"], "RepoDigests": ["nginx@sha256:pinned"]},
          {"Id": "sha256:redis-new", "RepoTags": ["redis:7-alpine"], "RepoDigests": []}]


@pytest.mark.parametrize("image_name, image_id, state", [
    ("image2model-backend", "sha256:backend", "current"),
    ("nginx", "sha256:nginx", "current"),
    ("nginx@sha256:pinned", "sha256:nginx", "current"),
    ("docker.io/library/nginx:latest", "sha256:nginx", "current"),
    ("redis:7-alpine", "sha256:redis-old", "its name points to a newer image"),
    ("postgres:15", "sha256:postgres", "its name no longer exists"),
])
def test_image_drift_for_every_way_a_compose_file_names_an_image(image_name, image_id, state):
    [item] = drift_image_items({"svc": container(image_name, image_id)}, IMAGES)
    assert (item["state"], item["ok"]) == (state, state == "current")


COMPOSE_CONFIG = {"services": {
    "backend": {"environment": {"API_KEY": "k$$ey", "REDIS_URL": "redis://b", "LOG_LEVEL": "info", "PASSED": None}},
    "worker": {"environment": ["CELERY_BROKER_URL=redis://b"]},  # docker-compose v1's list form
    "nginx": {}}}
KEY = "run key"


def inspected(service, env):
    """A `docker inspect` entry, as compose_stack_info reads it."""
    return container_summary({"Id": service, "Name": f"/p-{service}-1", "Image": "sha256:i", "State": {"Status": "running"},
                              "Config": {"Labels": {"com.docker.compose.service": service}, "Image": "i",
                                         "Env": [f"{k}={v}" for k, v in env.items()]}}, KEY)


def states(checks):
    return {(check["service"], check["item"]): check["state"] for check in checks}


def test_intended_environment_is_each_service_entries_as_compose_resolves_them():
    containers = [inspected("backend", {"API_KEY": "k$ey", "REDIS_URL": "redis://a", "LOG_LEVEL": "", "PATH": "/bin"}),
                  inspected("worker", {})]
    assert states(verify_env_checks(containers, model_services(COMPOSE_CONFIG, KEY), {})) == {
        ("backend", "API_KEY"): "match",  # compose config writes a literal $ as $$
        ("backend", "LOG_LEVEL"): "empty",  # a literal of the compose file
        ("backend", "REDIS_URL"): "mismatch",  # a renamed source
        ("worker", "CELERY_BROKER_URL"): "missing"}


def test_narrowing_keeps_only_the_keys_named_and_flags_a_key_the_service_does_not_set():
    containers = [inspected("backend", {"API_KEY": "k$ey"})]
    checks = verify_env_checks(containers, model_services(COMPOSE_CONFIG, KEY), {"backend": ["API_KEY", "ADMIN_API_KEY"]})
    assert states(checks) == {("backend", "API_KEY"): "match", ("backend", "ADMIN_API_KEY"): "not in the compose files",
                              ("worker", "CELERY_BROKER_URL"): "no container"}


def test_no_value_leaves_the_reading_and_its_fingerprints_hold_only_for_the_run_key():
    container = inspected("backend", {"API_KEY": "k$ey", "EMPTY": ""})
    assert "k$ey" not in repr(container) and container["env"]["EMPTY"] == ""
    assert container["env"]["API_KEY"] == fingerprint("k$ey", KEY) != fingerprint("k$ey", "another run's key")


# `compose config --no-interpolate` output, parsed: every form of compose's interpolation.
MODEL = {
    "services": {
        "redis": {"command": ["sh", "-c", "echo 'requirepass ${REDIS_PASSWORD}' > /etc/r.conf"],
                  "healthcheck": {"test": ["CMD", "redis-cli", "-a", "$REDIS_PASSWORD", "ping"]}},
        "backend": {"environment": {"A": "${PLAIN}", "B": "$BARE-suffix", "C": "${DEFAULTED:-x}", "D": "${DASH-x}",
                                    "E": "${REQUIRED:?set it}", "F": "${ALTERNATE:+on}", "G": "$${ESCAPED} and $$LITERAL",
                                    "H": "${EMPTY_DEFAULT:-}"},
                    "ports": ["127.0.0.1:${PORT:-}:80"]},
        "flower": {"command": "flower --basic_auth=${FLOWER_BASIC_AUTH}", "environment": ["KEY=${API_KEY}"]},
    },
    "networks": {"front": {"name": "${COMPOSE_PROJECT_NAME}-front"}},
}


def test_every_interpolation_form_is_read_with_compose_rules():
    found = {(item["variable"], item["service"], item["field"], item["needs_value"]) for item in compose_interpolations(MODEL)}
    assert found == {
        ("REDIS_PASSWORD", "redis", "command", True), ("REDIS_PASSWORD", "redis", "healthcheck", True),
        ("PLAIN", "backend", "environment", True), ("BARE", "backend", "environment", True),
        ("DEFAULTED", "backend", "environment", False), ("DASH", "backend", "environment", False),
        ("REQUIRED", "backend", "environment", True), ("ALTERNATE", "backend", "environment", False),
        ("EMPTY_DEFAULT", "backend", "environment", False), ("PORT", "backend", "ports", False),
        ("FLOWER_BASIC_AUTH", "flower", "command", True), ("API_KEY", "flower", "environment", True),
        ("COMPOSE_PROJECT_NAME", "", "networks", True),
    }


def test_the_model_is_read_the_same_from_compose_configs_yaml_text():
    text = yaml.safe_dump(MODEL, default_flow_style=False)
    def places(found):
        return sorted(tuple(sorted(item.items())) for item in found)
    assert places(compose_interpolations(text)) == places(compose_interpolations(MODEL))

    class ModuleOutput(str):
        """What a registered module output is to a filter on ansible-core 2.17 and 2.18 (AnsibleUnsafeText)."""
    assert places(compose_interpolations(ModuleOutput(text))) == places(compose_interpolations(MODEL))


def test_variables_without_a_default_that_the_env_file_does_not_set_are_named_with_their_places():
    env_keys = {"REDIS_PASSWORD", "PLAIN", "FLOWER_BASIC_AUTH", "API_KEY", "COMPOSE_PROJECT_NAME"}
    assert compose_unset_variables(compose_interpolations(MODEL), env_keys) == [
        "BARE (backend: environment)", "REQUIRED (backend: environment)"]


@pytest.mark.parametrize("value", ["pass word", "it's", 'say"', "a$b", "back\\slash", "tick`", "tab\tx"])
def test_a_secret_that_breaks_a_shell_word_is_named_with_the_commands_it_is_pasted_into(value):
    secrets = {"REDIS_PASSWORD": value, "FLOWER_BASIC_AUTH": "admin:plain-1.2@x", "API_KEY": value}
    assert compose_unsafe_command_values(compose_interpolations(MODEL), secrets) == [
        "redis: command uses REDIS_PASSWORD", "redis: healthcheck uses REDIS_PASSWORD"]


def test_an_orphan_is_a_container_compose_made_for_a_service_no_longer_in_its_files():
    def running(name, config_hash):
        return {"name": name, "status": "running", "health": "none", "config_hash": config_hash}
    containers = {"worker": running("p-worker-1", "ab"), "worker-old": running("p-worker-old-1", "cd"), "by-hand": running("p-by-hand", "")}
    assert [(check["service"], check["item"], check["ok"]) for check in verify_service_checks(containers, ["worker"])] == [
        ("worker-old", "orphan", False), ("worker", "running", True)]
    assert [check["item"] for check in verify_service_checks(containers, [])] == []  # compose config failed


def test_a_plain_value_that_breaks_a_healthcheck_is_named_too():
    # Production's postgres healthcheck: pg_isready -U ${POSTGRES_USER}, a value of i2m_env.
    model = {"services": {"postgres": {"healthcheck": {"test": ["CMD-SHELL", "pg_isready -U ${POSTGRES_USER}"]}}}}
    assert compose_unsafe_command_values(compose_interpolations(model), {"POSTGRES_USER": "image 2 model"}) == [
        "postgres: healthcheck uses POSTGRES_USER"]
    assert compose_unsafe_command_values(compose_interpolations(model), {"POSTGRES_USER": "image2model"}) == []


def test_a_secret_wins_over_a_plain_value_of_the_same_key_as_in_the_env_file():
    model = {"services": {"postgres": {"healthcheck": {"test": ["CMD-SHELL", "pg_isready -U ${POSTGRES_USER}"]}}}}
    interpolations = compose_interpolations(model)
    assert compose_unsafe_command_values(interpolations, {"POSTGRES_USER": "plain"}, {"POSTGRES_USER": "has space"}) == [
        "postgres: healthcheck uses POSTGRES_USER"]
    assert compose_unsafe_command_values(interpolations, {"POSTGRES_USER": "has space"}, {"POSTGRES_USER": "plain"}) == []


def test_the_lock_is_read_as_free_held_with_its_holder_or_held_with_none(tmp_path):
    lock = tmp_path / ".i2m-lock"
    assert lock_state(str(lock)) == {"exists": False, "holder": ""}
    lock.mkdir()
    assert lock_state(str(lock)) == {"exists": True, "holder": ""}  # a run stopped between mkdir and its holder
    (lock / "holder").write_text('{"pid": 42, "run_id": "r1"}\n')
    assert lock_state(str(lock)) == {"exists": True, "holder": '{"pid": 42, "run_id": "r1"}'}
