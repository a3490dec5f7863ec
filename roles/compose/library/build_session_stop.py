#!/usr/bin/python
"""Ansible module: stop the detached --no-cache build whose log names its session, if it still runs."""

import os
import re
import signal
import time

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: build_session_stop
short_description: Stop a detached build that a remediation left running, and nothing else
description:
  - The remediation's C(build --no-cache) runs as an async job in a session of its own (setsid),
    so a signal that interrupts the playbook never reaches it. The first line of its log names
    that session (C(i2m-build-session=SID)).
  - Acts only while the build runs: the log has no exit line (C(i2m-build-exit=N)) and a live
    process of that session has the log open or names it in its command line. A session that
    ended, or whose id now belongs to an unrelated process (ids are reused), is left alone.
  - Sends SIGTERM to every process of the session, waits up to O(timeout) seconds for them to
    end, then sends SIGKILL to whatever is left and waits for it to be gone. Reads /proc, so
    Linux hosts only.
options:
  log:
    description: The build's log, whose first line names its session.
    type: path
    required: true
  timeout:
    description: Seconds the build's processes get to end after SIGTERM, before SIGKILL.
    type: float
    default: 10
author: i2m-ops
"""

EXAMPLES = r"""
- name: Stop the build an interrupted remediation left running
  build_session_stop:
    log: /opt/image2model/.i2m-build.log
"""

RETURN = r"""
state:
  description: >-
    stopped (the build was running and is stopped now), ended (its log has the exit line, or no
    process of the session holds the log), no log, or no session (the log names none).
  type: str
  returned: always
session:
  description: The session id the log names, 0 when none.
  type: int
  returned: always
pids:
  description: The processes of the session that were signalled.
  type: list
  elements: int
  returned: always
killed:
  description: The processes that had to be sent SIGKILL after the timeout.
  type: list
  elements: int
  returned: always
"""

SESSION_LINE = re.compile(r"^i2m-build-session=(\d+)\s*$")
EXIT_LINE = re.compile(r"^i2m-build-exit=\d+\s*$", re.MULTILINE)
# How long processes sent SIGKILL get to be gone (the kernel ends them at once, when scheduled)
KILL_WAIT_S = 5


def _session_and_state(pid: int) -> tuple:
    """(session id, state letter) of a process from /proc/PID/stat; (None, None) if it is gone.
    The command name (field 2) may hold spaces and parentheses: fields are read after its last ')'."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None, None
    return int(fields[3]), fields[0]


def session_processes(session: int) -> list:
    """The live (not zombie) processes whose session id is session, ascending."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            sid, state = _session_and_state(int(name))
            if sid == session and state != "Z":
                found.append(int(name))
    return sorted(found)


def holds_log(pid: int, log: str) -> bool:
    """Whether process pid has the file log open, or names it in its command line."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            if log.encode() in handle.read().split(b"\0"):
                return True
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for descriptor in descriptors:
        try:
            if os.readlink(f"/proc/{pid}/fd/{descriptor}") == log:
                return True
        except OSError:
            continue
    return False


def _signal_all(pids: list, signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def stop_build_session(log: str, timeout: float = 10, check_mode: bool = False) -> dict:
    """Stops the build whose log is log, if it still runs; returns the module's result fields
    (state, session, pids, killed, changed). Never signals a process outside the session that
    the log's first line names, nor that session unless one of its processes holds the log."""
    log = os.path.realpath(log)
    result = {"state": "no log", "session": 0, "pids": [], "killed": [], "changed": False}
    try:
        with open(log, encoding="utf-8", errors="replace") as handle:
            first = handle.readline()
            rest = handle.read()
    except FileNotFoundError:
        return result
    match = SESSION_LINE.match(first)
    if not match:
        return {**result, "state": "no session"}
    session = int(match[1])
    result.update(session=session, state="ended")
    if EXIT_LINE.search(rest):
        return result
    pids = session_processes(session)
    if not any(holds_log(pid, log) for pid in pids):
        return result
    result.update(state="stopped", pids=pids, changed=True)
    if check_mode:
        return result
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while session_processes(session) and time.monotonic() < deadline:
        time.sleep(0.1)
    # Whatever of the session still runs: the processes signalled, or children they started since.
    result["killed"] = session_processes(session)
    _signal_all(result["killed"], signal.SIGKILL)
    deadline = time.monotonic() + KILL_WAIT_S
    while session_processes(session) and time.monotonic() < deadline:
        time.sleep(0.05)
    return result


def main():
    module = AnsibleModule(argument_spec={"log": {"type": "path", "required": True},
                                          "timeout": {"type": "float", "default": 10}},
                           supports_check_mode=True)
    module.exit_json(**stop_build_session(module.params["log"], module.params["timeout"], module.check_mode))


if __name__ == "__main__":
    main()
