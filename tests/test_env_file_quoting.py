"""The env_file role's quoting, checked against what the real compose readers return.

Each value is written with the role's own filter, then read back by `docker compose config`
(v2) or `docker-compose config` (v1) through environment interpolation, as in production.
"""

import importlib.util
import json
import shutil
import subprocess

import pytest
import yaml
from conftest import REPO

spec = importlib.util.spec_from_file_location("env_file_filters", REPO / "roles/env_file/filter_plugins/env_file.py")
env_file_filters = importlib.util.module_from_spec(spec)
spec.loader.exec_module(env_file_filters)

VALUES = {
    "dollar": "pa$word $HOME $$ end$",
    "braces": "x${HOME}y",
    "hash": "value # not a comment",
    "double_quote": 'say "hi"',
    "single_quote": "it's",
    "both_quotes_and_dollar": "it's \"q\" $HOME \\ #",
    "backslashes": "C:\\path\\n\\t\\\\x",
    "trailing_backslash": "ends\\",
    "spaces": "  leading and trailing  ",
    "cron": "0 2 * * *",
    "equals": "a=b==",
    "empty": "",
}


def read_back(dialect, tmp_path, values):
    env_file = tmp_path / "env"
    env_file.write_text("".join(f"{key.upper()}={env_file_filters.env_file_quote(value, dialect)}\n" for key, value in values.items()))
    compose_file = tmp_path / "compose.yml"
    environment = [f"{key.upper()}=${{{key.upper()}}}" for key in values]
    compose_file.write_text(yaml.safe_dump({"services": {"probe": {"image": "i2m-base:trixie", "environment": environment}}}))
    if dialect == "compose_v2":
        out = subprocess.run(["docker", "compose", "-p", "i2m-quoting", "-f", str(compose_file), "--env-file", str(env_file),
                              "config", "--format", "json"], capture_output=True, text=True, check=True).stdout
        got = json.loads(out)["services"]["probe"]["environment"]
    else:
        out = subprocess.run(["docker-compose", "-p", "i2m-quoting", "-f", str(compose_file), "--env-file", str(env_file),
                              "config"], capture_output=True, text=True, check=True).stdout
        got = yaml.safe_load(out)["services"]["probe"]["environment"]
    # `config` prints $ as $$ so that its output stays valid compose input.
    return {key.lower(): str(value).replace("$$", "$") for key, value in got.items()}


def test_compose_v2_reads_every_value_back_exactly(tmp_path):
    assert read_back("compose_v2", tmp_path, VALUES) == VALUES


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose v1 is not installed on this host")
def test_compose_v1_reads_back_every_value_it_can_carry(tmp_path):
    carried = {name: value for name, value in VALUES.items()
               if not env_file_filters.env_file_problems({name.upper(): value}, {}, [], "compose_v1")}
    assert set(VALUES) - set(carried) == {"braces", "trailing_backslash"}
    assert read_back("compose_v1", tmp_path, carried) == carried


@pytest.mark.parametrize("values, required, expected", [
    ({"A": None}, [], "A is null"),
    ({"A": True}, [], "A must be a string or an integer, not bool"),
    ({"A": 1.1}, [], "A must be a string or an integer, not float"),
    ({"A": ["x"]}, [], "A must be a string or an integer, not list"),
    ({"A": "one\ntwo"}, [], "A holds a line break"),
    ({"A": "   "}, ["A"], "A is required but empty"),
    ({}, ["A"], "A is required but not set"),
    ({"1A": "x"}, [], "'1A' is not a valid variable name"),
    ({"URL": "https://x/v1HOST=backend", "HOST": "backend"}, [], "URL has another assignment glued on (HOST=...)"),
])
def test_bad_inputs_are_named(values, required, expected):
    problems = env_file_filters.env_file_problems(values, {}, required, "compose_v2")
    assert any(expected in problem for problem in problems), problems


def test_a_key_both_value_and_secret_is_refused():
    assert env_file_filters.env_file_problems({"A": "1"}, {"A": "2"}, [], "compose_v2") == [
        "A is set both as a value and as a secret: keep one"]


def test_problems_never_carry_values():
    secret = "s3cr3t-value-with-HOST=glued"
    problems = env_file_filters.env_file_problems({"HOST": "x"}, {"TOKEN": secret}, ["MISSING"], "compose_v2")
    assert problems and not any("s3cr3t" in problem for problem in problems)


def test_redaction_names_the_key():
    assert env_file_filters.env_file_redact("error near 'abc$1'", {"API_KEY": "abc$1"}) == "error near '<redacted:API_KEY>'"
