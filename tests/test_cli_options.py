"""The CLI's own options, help and shell completion: the real console script, no playbook run."""

import os
import subprocess

import pytest
from conftest import REPO, VENV_BIN

from i2m_ops.progress import build_step

I2M_OPS = str(VENV_BIN / "i2m-ops")


def run(*args, env=None):
    return subprocess.run([I2M_OPS, *args], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def test_remediate_help_says_what_the_default_does_and_shows_no_type_metavars():
    done = run("remediate", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.replace("│", " ").split())
    assert "--strategy" in text and "<build-first|rolling|report>" in text and "--services" in text
    assert "build-first: build --no-cache while the old containers keep serving, then recreate (the default" in text
    assert "By default (build-first) the old containers keep serving during the build" in text
    assert "down, build --no-cache, up -d" not in text  # the report's order is not the default
    for command in ["remediate", "drift", "deploy", "report"]:
        shown = run(command, "--help").stdout + run("--help").stdout
        assert "<bool>" not in shown and "<int>" not in shown and "<list[str]>" not in shown, command


def complete(words: str) -> list:
    """Asks the console script for completions as bash's completion function does."""
    done = run(env={"_I2M_OPS_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1)})
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_shell_completion_offers_commands_options_and_strategies():
    assert "remediate" in complete("i2m-ops rem")
    assert complete("i2m-ops remediate --str") == ["--strategy"]
    assert complete("i2m-ops remediate --strategy ") == ["build-first", "rolling", "report"]
    assert complete("i2m-ops drift --format ") == ["text", "json", "prometheus"]
    script = run("--show-completion", "bash")
    assert script.returncode == 0 and "_I2M_OPS_COMPLETE=complete_bash" in script.stdout


@pytest.mark.parametrize("args, message", [
    (["--strategy", "fast"], "Invalid value for '--strategy'"),
    (["--services", "back end"], "'back end' is not a compose service name"),
    (["--services", "backend,worker;rm"], "'worker;rm' is not a compose service name"),
])
def test_bad_remediate_options_exit_3_before_any_playbook(args, message, tmp_path):
    done = run("remediate", *args, "--artifacts-dir", str(tmp_path))
    assert done.returncode == 3
    assert message in " ".join(done.stderr.replace("│", " ").split())
    assert list(tmp_path.iterdir()) == []


def test_build_step_is_read_from_compose_plain_progress():
    output = "\n".join([
        '#0 building with "default" instance using docker driver',
        "#1 [internal] load local bake definitions",
        "#2 [backend internal] load build definition from Dockerfile",
        "#6 [backend 2/4] RUN useradd --system app",
        "#6 0.271 useradd warning: app's uid 10001 is greater than SYS_UID_MAX 999",
        "#6 DONE 0.3s",
    ])
    assert build_step(output) == ("backend", "2/4", "RUN useradd --system app")
    assert build_step(output + "\n#9 [worker] exporting to image\n#9 exporting layers") == ("worker", "", "exporting to image")
    assert build_step('#0 building with "default" instance\n#1 [internal] load local bake definitions') is None
    assert build_step("") is None
