"""What an operator sees: i2m-ops remediate in a pseudo-terminal, its options, and the tags.

One stand-in stack for the module: remediated in a terminal first, then checked with
`--tags verify`, then remediated again with `--strategy report --services backend,worker`.
"""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pexpect
import pytest
from canary import canary_hits
from conftest import REPO, VENV_BIN
from run_schema import assert_matches_schema

# One frame of the live display: "⠹ 00:17  remediate | localhost | <task>"
FRAME = re.compile(r"(\d\d):(\d\d)  remediate \| (\S+) \| ([^\r\n\x1b]*)")
FOLLOW_BUILD = "Follow compose's build progress, every 2 s, of "
# Included in build-first only when their strategy is chosen: skipped, so never on screen.
SKIPPED_IN_BUILD_FIRST = ["Remediate rolling", "Remediate in the diagnosis report's order"]


@pytest.fixture(scope="module", autouse=True)
def slow_build(stack, tmp_path_factory):
    """The stand-in with a backend build step that lasts 8 s, whatever the machine's load: the
    terminal is read twice, 2 s apart, while the build runs."""
    source = tmp_path_factory.mktemp("standin") / "standin"
    shutil.copytree(REPO / "standin", source)
    dockerfile = source / "backend" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("WORKDIR /app\n", "WORKDIR /app\nRUN sleep 8\n", 1))
    stack.extra_vars["i2m_standin_source"] = str(source)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return tmp_path_factory.mktemp("artifacts")


def seconds(match) -> int:
    return int(match[1]) * 60 + int(match[2])


def drain(child: pexpect.spawn) -> str:
    """What the terminal received so far (the display redraws 4 times a second: read for 0.5 s)."""
    text, deadline = "", time.monotonic() + 0.5
    while time.monotonic() < deadline:
        try:
            text += child.read_nonblocking(65536, timeout=0.1)
        except pexpect.TIMEOUT:
            continue
    return text


def test_remediate_in_a_terminal_shows_a_clock_that_moves_and_the_service_being_built(stack, artifacts):
    command = ["remediate", "--strategy", "build-first", "--services", "backend", "-e", f"@{stack.vars_file()}",
               "--artifacts-dir", str(artifacts)]
    # COLUMNS and LINES (pytest-xdist sets 80x24) would override the terminal's own size in rich.
    environment = {name: value for name, value in os.environ.items() if name not in ("COLUMNS", "LINES")}
    child = pexpect.spawn(str(VENV_BIN / "i2m-ops"), command, cwd=str(REPO), encoding="utf-8", timeout=900,
                          dimensions=(30, 220), env={**environment, "TERM": "xterm-256color"})
    screen = ""
    try:
        found = child.expect([re.compile(FRAME.pattern.replace(r"([^\r\n\x1b]*)", re.escape(FOLLOW_BUILD) + r"([\w, .-]+)")),
                              pexpect.EOF])
        assert found == 0, f"the build never showed on the terminal: {child.before[-3000:]!r}"
        first = child.match
        screen = child.before + child.after
        time.sleep(2)
        later = drain(child)
        screen += later
        frames = list(FRAME.finditer(later))
        assert frames, f"no frame of the live display in the 2 s after the build started: {later[-500:]!r}"
        second = frames[-1]
        assert seconds(second) >= seconds(first) + 1, f"the clock did not move: {first[0]!r} then {second[0]!r}"
        assert "backend" in first[4] and "backend" in later[second.start():], \
            f"the service being built is not on screen 2 s later: {later[second.start():]!r}"
        child.expect(pexpect.EOF)
        screen += child.before
    finally:
        child.close(force=True)
    stack.outputs.append(screen)
    assert child.exitstatus == 0, screen[-3000:]
    assert canary_hits(screen, stack.secrets) == []
    for skipped in SKIPPED_IN_BUILD_FIRST:
        assert skipped not in screen, f"a skipped task is shown: {skipped}"
    assert "✅ backend env API_KEY: match" in screen


def containers_state(stack) -> dict:
    return {container.name: (container.id, container.attrs["State"]["StartedAt"])
            for service in ["backend", "worker", "redis", "nginx"] for container in stack.containers(service)}


def test_tags_verify_runs_only_the_checks_and_changes_nothing(stack):
    before = containers_state(stack)
    env_file = stack.project_dir / ".env.production"
    env_file_mtime = env_file.stat().st_mtime_ns
    run = stack.playbook("remediate.yml", env={"ANSIBLE_RUN_TAGS": "verify"})
    assert run.returncode == 0, run.output[-3000:]
    assert run.recap_counts()["changed"] == 0
    assert "TASK [verify : Assert that every check passed]" in run.output
    for not_run in ["Take the stack's lock", "Render the env file", "Build without the cache", "Put the stand-in stack in place"]:
        assert f"TASK [{not_run}" not in run.output and f": {not_run}" not in run.output, not_run
    assert containers_state(stack) == before and env_file.stat().st_mtime_ns == env_file_mtime


def test_strategy_and_services_options_reach_the_playbook_and_progress_is_plain_off_a_terminal(stack, artifacts):
    command = [str(VENV_BIN / "i2m-ops"), "remediate", "--strategy", "report", "--services", "backend,worker",
               "-e", f"@{stack.vars_file()}", "--artifacts-dir", str(artifacts)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    stack.outputs.append(done.stdout + done.stderr)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    lines = done.stderr.splitlines()
    assert all(re.match(r"^\[ *\d+\.\ds\] remediate: localhost: ", line) for line in lines), lines[:5]
    tasks = [line.split(": ", 2)[2] for line in lines]
    assert len(tasks) == len(set(tasks)), "a task printed twice"
    assert f"{FOLLOW_BUILD}backend, worker" in tasks
    assert "Stop and remove the stack's containers (compose down, volumes kept)" in tasks
    assert not [task for task in tasks if task.startswith(("Remediate building first", "Remediate rolling"))]

    audit = subprocess.run([str(VENV_BIN / "i2m-ops"), "audit", "--json", "-e", f"@{stack.vars_file()}",
                            "--artifacts-dir", str(artifacts)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert audit.returncode == 0, audit.stderr[-2000:]
    assert json.loads(audit.stdout)["audit"]["localhost"][-1].endswith("result=ok (report)")


def test_every_run_document_matches_the_published_schema(artifacts):
    documents = [json.loads(path.read_text()) for path in sorted(Path(artifacts).glob("*/run.json"))]
    assert [document["command"] for document in documents] == ["remediate", "remediate", "audit"]
    for document in documents:
        assert_matches_schema(document)


def test_no_canary_in_any_output_or_artifact(stack, artifacts):
    files = [path for path in Path(artifacts).rglob("*") if path.is_file()]
    leaked = {str(path): hits for path in files if (hits := canary_hits(path.read_bytes().decode(errors="replace"), stack.secrets))}
    assert leaked == {}
    assert canary_hits("\n".join(stack.outputs), stack.secrets) == []
