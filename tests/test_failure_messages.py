"""What a failed step says in the run's document: the failing command's own last lines, not only
Ansible's "non-zero return code". A real ansible-runner run of a small playbook; no stack."""

from conftest import REPO

from i2m_ops.runner import run_stage


def test_a_failed_command_carries_its_last_error_lines(tmp_path):
    stage = run_stage("failing", "../tests/playbooks/failing_command.yml", inventory=REPO / "inventory" / "local",
                      run_dir=tmp_path, playbook_args=[])
    [task] = stage.failed_tasks
    assert task["task"] == "Build something that fails"
    assert task["message"].startswith("non-zero return code; the command said:\n"), task["message"]
    assert task["message"].splitlines()[1:] == ["step 3", "step 4", "step 5", "step 6", "ERROR: failed to solve: exit code 2"]
