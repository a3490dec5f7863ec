#!/usr/bin/python
"""Ansible module: does a redis server accept a password? Read-only: AUTH then PING."""

import socket

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: redis_auth_probe
short_description: Check that a redis server accepts a password, changing nothing
description:
  - Connects to redis, sends AUTH with the password, then PING. The password travels in the
    module's arguments (never a process argument) and is never returned.
options:
  host:
    description: Address of the redis server.
    type: str
    required: true
  port:
    description: Port of the redis server.
    type: int
    default: 6379
  password:
    description: The password to try.
    type: str
    required: true
    no_log: true
  timeout:
    description: Seconds to wait for each answer.
    type: float
    default: 5
author: i2m-ops
"""

RETURN = r"""
state:
  description: accepted, rejected (wrong password), no password set, or unreachable.
  type: str
  returned: always
"""


def resp_command(*parts: str) -> bytes:
    encoded = [part.encode() for part in parts]
    return b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in encoded)


def probe(host: str, port: int, password: str, timeout: float) -> str:
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            connection.sendall(resp_command("AUTH", password))
            answer = connection.recv(256)
    except OSError:
        return "unreachable"
    if answer.startswith(b"+OK"):
        return "accepted"
    if b"without any password" in answer or b"no password is set" in answer:
        return "no password set"
    return "rejected"


def main() -> None:
    module = AnsibleModule(argument_spec={"host": {"type": "str", "required": True}, "port": {"type": "int", "default": 6379},
                                          "password": {"type": "str", "required": True, "no_log": True},
                                          "timeout": {"type": "float", "default": 5}},
                           supports_check_mode=True)
    params = module.params
    module.exit_json(changed=False, state=probe(params["host"], params["port"], params["password"], params["timeout"]))


if __name__ == "__main__":
    main()
