#!/usr/bin/python
"""Ansible module: what a host offers a compose stack, read in one run: the Docker engine, the
compose command, and the stack's compose files with their uninterpolated model. Read-only."""

import os

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: compose_host_info
short_description: Ask the Docker engine, find compose, and read a stack's compose files, in one run
description:
  - Asks the Docker engine for its version (C(docker version)), looks for the compose v2 plugin
    (C(docker compose version)) and, where it is missing, for docker-compose v1, as the preflight
    and the compose role need before anything changes.
  - With C(files), also says which of them are missing from C(project_dir) and, when none is,
    reads the model compose merges from them without interpolation and, where compose v2 knows
    how, without the services' C(env_file:) contents (C(config --no-interpolate
    --no-env-resolution)), so that no value of an env file is read.
options:
  engine:
    description: Ask the Docker engine for its version.
    type: bool
    default: true
  project_dir:
    description: The folder the compose files are in (compose's C(--project-directory)).
    type: path
  files:
    description: The compose files, relative to C(project_dir); empty reads none.
    type: list
    elements: str
    default: []
author: i2m-ops
"""

RETURN = r"""
engine:
  description: C({ok, version, error}) of the Docker engine; C(error) is the docker CLI's stderr.
  type: dict
  returned: when engine is true
compose:
  description: C({v2, v1}), each the version found, C("") when that compose is missing.
  type: dict
  returned: always
missing_files:
  description: The files not found in C(project_dir).
  type: list
  returned: always
model:
  description: C({rc, text, error}) of C(config --no-interpolate) (YAML text), with the compose found
    (v2, else v1); C(rc) is null when it was not read (no files, a file missing, no compose).
  type: dict
  returned: always
"""


def version(module, argv):
    """The version a command prints (its first line), "" when it fails."""
    rc, out, _ = module.run_command(argv, environ_update={"LC_ALL": "C"})
    return out.strip().splitlines()[0] if rc == 0 and out.strip() else ""


def main():
    module = AnsibleModule(
        argument_spec={"engine": {"type": "bool", "default": True}, "project_dir": {"type": "path"},
                       "files": {"type": "list", "elements": "str", "default": []}},
        supports_check_mode=True,
    )
    params = module.params
    result = {"changed": False, "missing_files": [], "model": {"rc": None, "text": "", "error": ""}}
    if params["engine"]:
        rc, out, err = module.run_command(["docker", "version", "--format", "{{.Server.Version}}"], environ_update={"LC_ALL": "C"})
        result["engine"] = {"ok": rc == 0, "version": out.strip() if rc == 0 else "", "error": err.strip() if rc else ""}
    v2 = version(module, ["docker", "compose", "version", "--short"])
    result["compose"] = {"v2": v2, "v1": "" if v2 else version(module, ["docker-compose", "version", "--short"])}
    if params["files"]:
        paths = [os.path.join(params["project_dir"], name) for name in params["files"]]
        result["missing_files"] = [name for name, path in zip(params["files"], paths) if not os.path.isfile(path)]
        command = ["docker", "compose"] if v2 else ["docker-compose"] if result["compose"]["v1"] else None
        if command and not result["missing_files"]:
            argv = command + ["--project-directory", params["project_dir"]]
            for path in paths:
                argv += ["-f", path]
            rc, out, err = module.run_command(argv + ["config", "--no-interpolate"] + (["--no-env-resolution"] if v2 else []),
                                              environ_update={"LC_ALL": "C"})
            if rc != 0 and "no-env-resolution" in err:  # a compose v2 older than the flag
                rc, out, err = module.run_command(argv + ["config", "--no-interpolate"], environ_update={"LC_ALL": "C"})
            result["model"] = {"rc": rc, "text": out if rc == 0 else "", "error": err.strip()}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
