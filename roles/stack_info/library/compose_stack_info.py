#!/usr/bin/python
"""Ansible module: everything the checks need about one compose stack, read in one run.

Read-only. Values of the environment (the compose model's and the containers') leave it as
keyed fingerprints only (HMAC-SHA256); log lines leave it as counts of patterns only.
"""

import hashlib
import hmac
import json
import os
import re
import select
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: compose_stack_info
short_description: Read a compose stack's model, containers, images, env file and logs in one run
description:
  - Runs, on the host, the docker and compose commands whose answers the checks of verify,
    drift and diagnose need, and the wait until the stack is healthy, so that each of those is
    one module run instead of a task per question.
  - The compose model is C(compose config) resolved with the env file; each service's
    environment comes back as fingerprints (HMAC-SHA256 of the value keyed with
    C(fingerprint_key), C("") for an empty value, C(null) for an entry without a value). A
    container's environment comes back the same way, so the two compare by fingerprint, and
    with a key of the run's own the fingerprints tell nothing about the values outside it.
  - Nothing is changed on the host.
options:
  fingerprint_key:
    description: The key of the fingerprints; a random one per run.
    type: str
    required: true
    no_log: true
  compose_command:
    description: The compose command as an argv prefix, with the project name, directory and
      files (the compose role's C(compose_command)).
    type: list
    elements: str
    required: true
  env_file:
    description: Absolute path of the env file given to compose with C(--env-file).
    type: path
    required: true
  project_name:
    description: The compose project, whose containers carry it in the label C(com.docker.compose.project).
    type: str
    required: true
  compose_v1:
    description: The command is docker-compose v1, whose C(config) writes YAML only.
    type: bool
    default: false
  config_hashes:
    description: Also read C(compose config --hash '*'), each service's configuration hash now.
    type: bool
    default: false
  images:
    description: Also read C(docker image inspect) of the images the containers were created from, by name.
    type: bool
    default: false
  env_file_rendered:
    description: What the env file should hold; the file on disk is compared with it, byte for byte and by key.
    type: str
    no_log: true
  log_services:
    description: Services whose recent log lines are counted against C(log_patterns); C([*]) for every service with a container.
    type: list
    elements: str
    default: []
  log_lines:
    description: How many of the last log lines are read.
    type: int
    default: 100
  log_patterns:
    description: Regular expressions (Python's C(re)) counted in the log lines. The values a pattern's named
      groups match are returned too (the last 5 distinct ones, in C(log_values)): name groups only
      for what may leave the host, such as an address.
    type: list
    elements: str
    default: []
  log_since:
    description: C({service: unix time}), services whose log lines are read from that time on (C(docker logs
      --since), the host's clock), instead of the last C(log_lines).
    type: dict
    default: {}
  read_model:
    description: Read the compose model (C(compose config)); false reads only the containers (and what is asked of them).
    type: bool
    default: true
  writable_paths:
    description: Paths that a service's running container must be able to write, C({service: [path, ...]}),
      tested with C(docker exec <container> test -w <path>).
    type: dict
    default: {}
  wait_timeout:
    description: Seconds to wait, before reading the containers, until every service in C(wait_services)
      runs and passes its healthcheck; 0 does not wait.
    type: int
    default: 0
  wait_services:
    description: The services waited for; empty for every service of the compose model.
    type: list
    elements: str
    default: []
  wait_replacing:
    description: Ids of containers being replaced (a rolling remediation); their services are ready once as many
      new containers as these (at least one) run and pass their healthchecks, whatever the old ones do.
    type: list
    elements: str
    default: []
  lock_dir:
    description: The stack's lock folder (the stack_guard role's); when given, whether it exists and its
      holder file are read first, in the same run. While the folder exists the stack is in the middle of
      a change (or its lock is dead), so nothing else is read and only C(lock) is returned, for the
      caller to judge the holder and read again without C(lock_dir) when the lock is dead.
    type: path
author: i2m-ops
"""

RETURN = r"""
model:
  description: C({ok, rc, unset_variables, services}); services maps each service to
    C({environment: {KEY: fingerprint}, healthcheck, depends_on, image, build}).
  type: dict
  returned: always
containers:
  description: The project's containers, C(compose run) ones left out, each C({id, service, name, status,
    health, started_at, image_id, image_name, user, config_hash, addresses, published, env}), env as fingerprints.
  type: list
  returned: always
config_hashes:
  description: C({service: hash}) from C(compose config --hash); empty when not asked or not known.
  type: dict
  returned: always
images:
  description: C(docker image inspect) entries C({Id, RepoTags, RepoDigests}) of the containers' image names.
  type: list
  returned: always
env_file:
  description: C({exists, mode, mtime, same_bytes, keys}); keys lists C({item, state}) for each key
    whose line differs from the rendering, and C(same_bytes) is null without C(env_file_rendered).
  type: dict
  returned: always
logs:
  description: C({service: {pattern: count}}) over the last C(log_lines) lines (stdout and stderr).
  type: dict
  returned: always
log_values:
  description: C({service: {group: [value, ...]}}), the last 5 distinct values of each named group of the patterns.
  type: dict
  returned: always
now:
  description: The host's clock when the containers were read, in seconds since the epoch (for C(log_since)).
  type: float
  returned: always
writable:
  description: C({service: {path: true|false|null}}), null where the service has no running container.
  type: dict
  returned: always
wait:
  description: C({ready, waited_s, not_ready}); not_ready names each service not ready, with why.
  type: dict
  returned: when wait_timeout is above 0
lock:
  description: C({exists, holder}), whether C(lock_dir) exists and the text of its C(holder) file (C("") when it has none).
  type: dict
  returned: when lock_dir is given
"""

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"
HASH_LABEL = "com.docker.compose.config-hash"
# Named fields only: `{{json .}}` includes .Size, which makes Docker measure each container's disk use.
PS_FORMAT = ('{"id":{{json .ID}},"service":{{json (.Label "com.docker.compose.service")}},'
             '"oneoff":{{json (.Label "com.docker.compose.oneoff")}},"state":{{json .State}},"status":{{json .Status}}}')
UNSET_WARNING = re.compile(r'The \\?"?([A-Za-z_][A-Za-z0-9_]*)\\?"? variable is not set')


def fingerprint(value, key):
    """A value as it may leave the module: None stays None (an entry without a value), "" stays
    "" (empty), anything else becomes the HMAC-SHA256 of its text, keyed with `key`."""
    if value is None:
        return None
    text = str(value)
    return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest() if text else ""


def _environment(entries):
    """A service's `environment` from compose config (a mapping, or a KEY=VALUE list in v1's
    older output) as {KEY: value}; compose config writes a literal $ as $$."""
    if isinstance(entries, list):
        entries = dict(entry.split("=", 1) if "=" in entry else (entry, None) for entry in entries)
    return {key: None if value is None else str(value).replace("$$", "$") for key, value in (entries or {}).items()}


def model_services(config, key):
    """Per service of a resolved compose model: its environment as fingerprints, whether it has
    a healthcheck of the compose file's, its dependencies, its image and whether it is built."""
    services = {}
    for name, definition in sorted((config.get("services") or {}).items()):
        depends_on = definition.get("depends_on") or {}
        healthcheck = definition.get("healthcheck") or {}
        services[name] = {
            "environment": {name: fingerprint(value, key) for name, value in _environment(definition.get("environment")).items()},
            "healthcheck": bool(healthcheck) and not healthcheck.get("disable", False),
            "depends_on": sorted(depends_on) if isinstance(depends_on, (dict, list)) else [],
            "image": definition.get("image") or "",
            "build": "build" in definition,
        }
    return services


def container_summary(inspected, key):
    """One `docker inspect` entry as what the checks need, its environment as fingerprints."""
    labels = inspected["Config"].get("Labels") or {}
    state = inspected["State"]
    network = inspected.get("NetworkSettings") or {}
    ports = network.get("Ports") or {}
    env = dict(item.split("=", 1) if "=" in item else (item, "") for item in inspected["Config"].get("Env") or [])
    return {
        "id": inspected["Id"],
        "service": labels.get(SERVICE_LABEL, ""),
        "name": inspected["Name"].lstrip("/"),
        "status": state.get("Status"),
        "health": (state.get("Health") or {}).get("Status", "none"),
        "started_at": state.get("StartedAt"),
        "image_id": inspected["Image"],
        "image_name": inspected["Config"].get("Image", ""),
        "user": inspected["Config"].get("User") or "",
        "config_hash": labels.get(HASH_LABEL, ""),
        "addresses": {name: info.get("IPAddress") for name, info in (network.get("Networks") or {}).items()},
        "published": {port: [f"{b['HostIp']}:{b['HostPort']}" for b in bindings] for port, bindings in ports.items() if bindings},
        "env": {name: fingerprint(value, key) for name, value in env.items()},
    }


def readiness(entry):
    """A `docker ps` entry (PS_FORMAT) as "ready", or why not: a container is ready when it runs
    and its healthcheck, if it has one, passes."""
    if entry["state"] != "running":
        return entry["state"] or "unknown"
    if "(health: starting)" in entry["status"]:
        return "health: starting"
    if "(unhealthy)" in entry["status"]:
        return "unhealthy"
    return "ready"


def not_ready(entries, services, replacing=()):
    """Each service not ready yet, with why: it needs a container, and all its containers ready;
    for a service whose containers in `replacing` are being replaced, as many new ready
    containers as those (at least one), the old ones not counted."""
    entries = [entry for entry in entries if entry["oneoff"] != "True"]
    waiting = []
    for service in services:
        mine = [entry for entry in entries if entry["service"] == service]
        old = [entry for entry in mine if entry["id"] in replacing]
        new = [entry for entry in mine if entry["id"] not in replacing]
        states = [readiness(entry) for entry in new]
        if len(new) < max(len(old), 1):
            waiting.append(f"{service}: {states[0] if states else 'no container'}" + (" (new containers still starting)" if old else ""))
        elif any(state != "ready" for state in states):
            waiting.append(f"{service}: {next(state for state in states if state != 'ready')}")
    return waiting


def log_counts(text, patterns):
    """({pattern: count}, {group: [value, ...]}) of the patterns in a log text: how often each
    matches, and the last 5 distinct values of their named groups, in the order last seen."""
    counts, values = {}, {}
    for pattern in patterns:
        matches = list(re.finditer(pattern, text))
        counts[pattern] = len(matches)
        for match in matches:
            for group, value in match.groupdict().items():
                if value is not None:
                    seen = values.setdefault(group, [])
                    if value in seen:
                        seen.remove(value)
                    seen.append(value)
    return counts, {group: seen[-5:] for group, seen in values.items()}


def env_file_state(path, rendered):
    """The env file on disk: whether it exists, its mode and change time and, against the
    rendering, whether the bytes are the same and which keys differ (names only; no digest of
    the file leaves the module, it would let a short secret be guessed)."""
    try:
        with open(path, "rb") as handle:
            content = handle.read()
        stat = os.stat(path)
    except FileNotFoundError:
        return {"exists": False, "mode": "", "mtime": 0, "same_bytes": None if rendered is None else False, "keys": []}
    state = {"exists": True, "mode": f"{stat.st_mode & 0o7777:04o}", "mtime": stat.st_mtime, "same_bytes": None, "keys": []}
    if rendered is not None:
        state["same_bytes"] = content == rendered.encode()
        state["keys"] = env_file_key_differences(rendered, content.decode(errors="replace"))
    return state


def _assignments(text):
    """KEY=VALUE lines as compose reads them where a key repeats: the last one wins."""
    lines = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            lines.setdefault(key.strip(), []).append(value)
    return lines


def env_file_key_differences(rendered, on_disk):
    """Keys whose line differs between the rendering and the file on disk, names only, each
    saying which way the difference goes: in the inventory only, on the host only, set more than
    once on the host, or set otherwise on the host."""
    want, have = _assignments(rendered), _assignments(on_disk)
    items = [{"item": key, "state": "in the inventory, missing from the file on the host"} for key in sorted(set(want) - set(have))]
    items += [{"item": key, "state": "in the file on the host, not in the inventory"} for key in sorted(set(have) - set(want))]
    for key in sorted(set(want) & set(have)):
        if len(have[key]) > 1:
            items.append({"item": key, "state": f"set {len(have[key])} times in the file on the host (compose takes the last)"})
        elif have[key][-1] != want[key][-1]:
            items.append({"item": key, "state": "set otherwise in the file on the host than the inventory renders it"})
    return items


class Stack:
    """The host's docker and compose, for one project."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.compose = self.params["compose_command"] + ["--env-file", self.params["env_file"]]

    def run(self, argv):
        return self.module.run_command(argv, environ_update={"LC_ALL": "C"})

    def model(self):
        argv = self.compose + ["config"] + ([] if self.params["compose_v1"] else ["--format", "json"])
        rc, out, err = self.run(argv)
        unset = sorted(set(UNSET_WARNING.findall(err)))
        if rc != 0:
            return {"ok": False, "rc": rc, "unset_variables": unset, "services": {}}
        if self.params["compose_v1"]:
            try:
                import yaml
            except ImportError:
                self.module.fail_json(msg="docker-compose v1 writes its model as YAML, which this host's Python cannot read: "
                                          "install PyYAML for it (Debian: apt-get install python3-yaml), or the compose v2 plugin")
            config = yaml.safe_load(out)
        else:
            config = json.loads(out)
        return {"ok": True, "rc": 0, "unset_variables": unset, "services": model_services(config, self.params["fingerprint_key"])}

    def config_hashes(self):
        rc, out, _ = self.run(self.compose + ["config", "--hash", "*"])
        return dict(line.split(None, 1) for line in out.splitlines() if line.strip()) if rc == 0 else {}

    def ps(self):
        rc, out, err = self.run(["docker", "ps", "--all", "--filter", f"label={PROJECT_LABEL}={self.params['project_name']}",
                                 "--format", PS_FORMAT])
        if rc != 0:
            self.module.fail_json(msg=f"docker ps failed: {err.strip()}")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def containers(self):
        for _ in range(2):  # a container removed between `ps` and `inspect`: look once more
            ids = [entry["id"] for entry in self.ps() if entry["oneoff"] != "True"]
            if not ids:
                return []
            rc, out, err = self.run(["docker", "inspect", "--type", "container"] + ids)
            if rc == 0:
                break
        else:
            self.module.fail_json(msg=f"docker inspect failed: {err.strip()}")
        return sorted((container_summary(entry, self.params["fingerprint_key"]) for entry in json.loads(out)), key=lambda c: (c["service"], c["name"]))

    def images(self, containers):
        names = sorted({container["image_name"] for container in containers})
        if not names:
            return []
        _, out, _ = self.run(["docker", "image", "inspect"] + names)  # names gone exit 1; the others are listed
        return [{"Id": image["Id"], "RepoTags": image.get("RepoTags") or [], "RepoDigests": image.get("RepoDigests") or []}
                for image in json.loads(out or "[]")]

    def logs(self, containers):
        """({service: {pattern: count}}, {service: {group: values}}) of the services asked for."""
        wanted, since = self.params["log_services"], self.params["log_since"]
        counts, values = {}, {}
        for container in containers:
            service = container["service"]
            if service in counts or not ("*" in wanted or service in wanted):
                continue
            window = ["--since", str(since[service])] if service in since else ["--tail", str(self.params["log_lines"])]
            _, out, err = self.run(["docker", "logs"] + window + [container["name"]])
            counts[service], values[service] = log_counts(f"{out}\n{err}", self.params["log_patterns"])
        return counts, values

    def writable(self, containers):
        running = {container["service"]: container["name"] for container in containers if container["status"] == "running"}
        result = {}
        for service, paths in self.params["writable_paths"].items():
            result[service] = {path: (self.run(["docker", "exec", running[service], "test", "-w", path])[0] == 0)
                               if service in running else None for path in paths}
        return result

    def wait(self, services):
        """Until every service is ready or the timeout passes: the stack is looked at again on
        each of its containers' events (`docker events`), and at least every 2 s."""
        started = time.monotonic()
        deadline = started + self.params["wait_timeout"]
        events = subprocess.Popen(["docker", "events", "--filter", "type=container", "--filter",
                                   f"label={PROJECT_LABEL}={self.params['project_name']}", "--format", "{{.Status}}"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            while True:
                waiting = not_ready(self.ps(), services, self.params["wait_replacing"])
                left = deadline - time.monotonic()
                if not waiting or left <= 0:
                    return {"ready": not waiting, "waited_s": round(time.monotonic() - started, 1), "not_ready": waiting}
                readable, _, _ = select.select([events.stdout], [], [], min(2.0, left))
                if readable and not os.read(events.stdout.fileno(), 65536):
                    time.sleep(min(1.0, max(left, 0)))  # the event stream ended: look every second
        finally:
            events.kill()
            events.wait()


def lock_state(lock_dir):
    """Whether the lock folder exists, and its holder file's text ("" when it has none or it cannot be read)."""
    try:
        with open(os.path.join(lock_dir, "holder"), encoding="utf-8", errors="replace") as holder:
            text = holder.read().strip()
    except OSError:
        text = ""
    return {"exists": os.path.isdir(lock_dir), "holder": text}


def main():
    module = AnsibleModule(
        argument_spec={
            "fingerprint_key": {"type": "str", "required": True, "no_log": True},
            "compose_command": {"type": "list", "elements": "str", "required": True},
            "env_file": {"type": "path", "required": True},
            "project_name": {"type": "str", "required": True},
            "compose_v1": {"type": "bool", "default": False},
            "config_hashes": {"type": "bool", "default": False},
            "images": {"type": "bool", "default": False},
            "env_file_rendered": {"type": "str", "no_log": True},
            "log_services": {"type": "list", "elements": "str", "default": []},
            "log_lines": {"type": "int", "default": 100},
            "log_patterns": {"type": "list", "elements": "str", "default": []},
            "log_since": {"type": "dict", "default": {}},
            "read_model": {"type": "bool", "default": True},
            "writable_paths": {"type": "dict", "default": {}},
            "wait_timeout": {"type": "int", "default": 0},
            "wait_services": {"type": "list", "elements": "str", "default": []},
            "wait_replacing": {"type": "list", "elements": "str", "default": []},
            "lock_dir": {"type": "path"},
        },
        supports_check_mode=True,
    )
    stack = Stack(module)
    params = module.params
    unread = {"ok": None, "rc": None, "unset_variables": [], "services": {}}
    result = {"changed": False}
    if params["lock_dir"]:
        result["lock"] = lock_state(params["lock_dir"])
        if result["lock"]["exists"]:
            module.exit_json(**result)  # a stack mid-change: a failed or half-done read would hide it
    result["model"] = stack.model() if params["read_model"] else unread
    if params["wait_timeout"] > 0:
        services = params["wait_services"] or list(result["model"]["services"])
        if not services:
            module.fail_json(msg=f"compose config failed (exit {result['model']['rc']}): no service to wait for is known", **result)
        result["wait"] = stack.wait(services)
    read_at = time.time()
    containers = stack.containers()
    logs, log_values = stack.logs(containers)
    result.update(
        now=read_at,
        containers=containers,
        config_hashes=stack.config_hashes() if params["config_hashes"] else {},
        images=stack.images(containers) if params["images"] else [],
        env_file=env_file_state(params["env_file"], params["env_file_rendered"]),
        logs=logs,
        log_values=log_values,
        writable=stack.writable(containers),
    )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
