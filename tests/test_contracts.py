"""What others rely on: the roles' documented defaults, the run document's schema, the metrics."""

import copy
import json
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import REPO, VENV_BIN
from prometheus_client.parser import text_string_to_metric_families
from run_schema import assert_matches_schema

from i2m_ops import prometheus
from i2m_ops.report import SCHEMA_FILE

SPECS = sorted(REPO.glob("roles/*/meta/argument_specs.yml"))


class Unsafe(str):
    """A string tagged !unsafe: Ansible never templates it."""


class SpecLoader(yaml.SafeLoader):
    """Reads argument specs as Ansible does, keeping the !unsafe mark."""


SpecLoader.add_constructor("!unsafe", lambda loader, node: Unsafe(loader.construct_scalar(node)))


def role_defaults(spec_path: Path) -> dict:
    return yaml.safe_load((spec_path.parents[1] / "defaults" / "main.yml").read_text()) or {}


@pytest.mark.parametrize("spec_path", SPECS, ids=lambda path: path.parts[-3])
def test_argument_spec_defaults_equal_the_role_defaults(spec_path):
    """A default that is a Jinja expression (from an i2m_* variable) is documented verbatim: that
    is what the role really falls back to, and ansible-doc shows where the value comes from. It
    must be marked !unsafe: Ansible templates the spec before validating, and a role used on its
    own (molecule's env_file scenario) has no i2m_* variables to resolve it with."""
    defaults = role_defaults(spec_path)
    for entry_point, spec in yaml.load(spec_path.read_text(), Loader=SpecLoader)["argument_specs"].items():
        for name, option in spec.get("options", {}).items():
            where = f"{spec_path.parts[-3]} {entry_point} {name}"
            if name in defaults:
                assert "default" in option, f"{where}: no default in the spec (defaults/main.yml has one)"
                assert option["default"] == defaults[name], f"{where}: the spec's default differs from defaults/main.yml"
                expression = isinstance(defaults[name], str) and "{{" in defaults[name]
                assert isinstance(option["default"], Unsafe) == expression, f"{where}: !unsafe on Jinja defaults, only there"
            else:
                assert "default" not in option, f"{where}: a default in the spec only, not in defaults/main.yml"


def test_ansible_doc_shows_the_defaults():
    roles = [path.parts[-3] for path in SPECS]
    done = subprocess.run([str(VENV_BIN / "ansible-doc"), "-t", "role", "--json", "-r", "roles", *roles],
                          cwd=REPO, capture_output=True, text=True, check=True)
    documented = json.loads(done.stdout)
    for role in roles:
        defaults = role_defaults(REPO / "roles" / role / "meta" / "argument_specs.yml")
        for entry_point, spec in documented[role]["entry_points"].items():
            for name, option in spec.get("options", {}).items():
                if name in defaults:
                    assert option.get("default") == defaults[name], f"{role} {entry_point} {name}"


def a_document() -> dict:
    return {"schema": "i2m-ops/run/1", "run_id": "20261130T010203Z-drift-1a2b", "command": "drift",
            "inventory": "inventory/local", "limit": None, "started_at": "2026-11-30T01:02:03Z",
            "started_epoch": 1795995723, "duration_s": 12.5, "artifacts": ".state/runs/20261130T010203Z-drift-1a2b",
            "exit_code": 2, "outcome": "drift found",
            "stages": [{"name": "drift", "playbook": "playbooks/drift.yml", "status": "successful", "rc": 0,
                        "duration_s": 11.9, "error": ""}],
            "hosts": {"web-1": dict.fromkeys(["ok", "changed", "failed", "unreachable", "skipped", "rescued", "ignored"], 0)},
            "failed_tasks": [], "unreachable_hosts": {"web-2": "ssh: connect to host web-2 port 22: refused"},
            "checks": {},
            "drift": {"web-1": [{"service": "-", "check": "env file", "item": "API_KEY", "state": "differs", "ok": False},
                                {"service": "-", "check": "env file", "item": "REDIS_URL", "state": "differs", "ok": False},
                                {"service": "backend", "check": "env", "item": "API_KEY", "state": "match", "ok": True}]},
            "diagnosis": {}, "audit": {}}


def test_the_schema_is_valid_and_catches_a_missing_or_mistyped_field():
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_FILE.read_text()))
    assert_matches_schema(a_document())
    for broken in ({"exit_code": 7}, {"limit": 3}, {"drift": {"web-1": [{"service": "-", "check": "env file"}]}}):
        document = {**copy.deepcopy(a_document()), **broken}
        with pytest.raises(AssertionError):
            assert_matches_schema(document)
    document = a_document()
    del document["hosts"]
    with pytest.raises(AssertionError, match="hosts"):
        assert_matches_schema(document)


def test_drift_metrics_keep_their_names_labels_and_values(tmp_path):
    target = tmp_path / "textfile" / "i2m_drift.prom"
    prometheus.write_textfile(target, a_document())
    assert [path.name for path in target.parent.iterdir()] == ["i2m_drift.prom"]
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in text_string_to_metric_families(target.read_text()) for sample in family.samples}
    assert samples == {
        ("i2m_drift_items", (("check", "env file"), ("host", "web-1"), ("service", "-"))): 2,
        ("i2m_drift_host_drifted", (("host", "web-1"),)): 1,
        ("i2m_drift_host_unreachable", (("host", "web-1"),)): 0,
        ("i2m_drift_host_unreachable", (("host", "web-2"),)): 1,
        ("i2m_drift_remediation_in_progress", (("host", "web-1"),)): 0,
        ("i2m_drift_remediation_in_progress", (("host", "web-2"),)): 0,
        ("i2m_drift_exit_code", ()): 2,
        ("i2m_drift_last_run_timestamp_seconds", ()): 1795995723,
        ("i2m_drift_last_run_duration_seconds", ()): 12.5,
    }
    assert "# TYPE i2m_drift_items gauge" in target.read_text()


def test_a_host_whose_lock_is_held_has_its_own_sample_and_no_drift(tmp_path):
    target = tmp_path / "i2m_drift.prom"
    held = {**a_document(), "exit_code": 5, "drift": {}, "unreachable_hosts": {},
            "lock_held": {"web-1": "ops@controller, pid 4242, run r, remediate since t"}}
    assert_matches_schema(held)
    prometheus.write_textfile(target, held)
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in text_string_to_metric_families(target.read_text()) for sample in family.samples}
    assert samples[("i2m_drift_remediation_in_progress", (("host", "web-1"),))] == 1
    assert samples[("i2m_drift_exit_code", ())] == 5
    assert not [name for name, _ in samples if name in ("i2m_drift_items", "i2m_drift_host_drifted")]
