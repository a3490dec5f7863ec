"""The roles' own modules on their pure parts: compose_stack_info's readiness rule, env file
comparison and log counts, and http_probes' multipart body. No engine needed: the modules' runs
against Docker are exercised by every playbook the other tests run."""

import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "roles/stack_info/library"))
sys.path.insert(0, str(REPO / "roles/verify/library"))
from compose_stack_info import env_file_key_differences, env_file_state, log_counts, not_ready  # noqa: E402
from http_probes import multipart_body  # noqa: E402


def ps(container_id, service, state="running", status="Up 3 seconds", oneoff="False"):
    return {"id": container_id, "service": service, "oneoff": oneoff, "state": state, "status": status}


@pytest.mark.parametrize("entries, waiting", [
    ([ps("a", "backend", status="Up 2 seconds (healthy)"), ps("b", "redis")], []),
    ([ps("a", "backend", status="Up 2 seconds (health: starting)"), ps("b", "redis")], ["backend: health: starting"]),
    ([ps("a", "backend", status="Up 9 seconds (unhealthy)"), ps("b", "redis")], ["backend: unhealthy"]),
    ([ps("a", "backend", state="exited", status="Exited (1)"), ps("b", "redis")], ["backend: exited"]),
    ([ps("b", "redis"), ps("c", "backend", oneoff="True")], ["backend: no container"]),  # a `compose run` is no service container
    ([ps("a", "backend"), ps("a2", "backend", state="restarting"), ps("b", "redis")], ["backend: restarting"]),
])
def test_a_service_is_ready_when_all_its_containers_run_and_pass_their_healthchecks(entries, waiting):
    assert not_ready(entries, ["backend", "redis"]) == waiting


def test_a_replaced_service_waits_for_as_many_new_ready_containers_as_old_ones():
    old = [ps("old1", "backend", status="Up 1 hour (healthy)"), ps("old2", "backend", status="Up 1 hour (healthy)")]
    starting = [ps("new1", "backend", status="Up 1 second (health: starting)")]
    assert not_ready(old + starting, ["backend"], ["old1", "old2"]) == ["backend: health: starting (new containers still starting)"]
    ready = [ps("new1", "backend", status="Up 5 seconds (healthy)"), ps("new2", "backend", status="Up 5 seconds (healthy)")]
    assert not_ready(old + ready, ["backend"], ["old1", "old2"]) == []


def test_env_file_differences_name_keys_never_values():
    rendered = "# managed\nA='1'\nB='secret'\nC='x'\n"
    on_disk = "A='1'\nB='other secret'\nB='secret'\nD='y'\n"
    assert env_file_key_differences(rendered, on_disk) == [
        {"item": "C", "state": "in the inventory, missing from the file on the host"},
        {"item": "D", "state": "in the file on the host, not in the inventory"},
        {"item": "B", "state": "set 2 times in the file on the host (compose takes the last)"}]


def test_env_file_bytes_are_compared_beyond_the_keys(tmp_path):
    path = tmp_path / ".env.production"
    path.write_bytes(b"A='1'\r\nB='2'\r\n")
    path.chmod(0o640)
    state = env_file_state(str(path), "A='1'\nB='2'\n")
    assert (state["exists"], state["mode"], state["same_bytes"]) == (True, "0640", False)
    assert state["keys"] == []  # the same keys and values: only the line endings differ
    path.write_text("A='1'\nB='2'\n")
    assert env_file_state(str(path), "A='1'\nB='2'\n")["same_bytes"] is True
    assert env_file_state(str(tmp_path / "gone"), "A='1'\n")["exists"] is False


def test_logs_leave_as_counts_and_the_values_of_named_groups():
    text = "Traceback (most recent call last)\nNameError: x\nTraceback again\n"
    assert log_counts(text, ["Traceback", "NameError", "ImportError"]) == ({"Traceback": 2, "NameError": 1, "ImportError": 0}, {})
    nginx = "\n".join(f'connect() failed (111: Connection refused) while connecting to upstream, upstream: "http://{address}:8000/"'
                      for address in ["10.0.0.5", "10.0.0.9", "10.0.0.5"])
    counts, values = log_counts(nginx, [r'connect\(\) failed .* upstream: "http://(?P<upstream>[^/"]+)'])
    assert list(counts.values()) == [3] and values == {"upstream": ["10.0.0.9:8000", "10.0.0.5:8000"]}


def test_the_upload_is_one_multipart_file_in_the_field_named():
    body, content_type = multipart_body({"field": "files", "filename": "i2m-probe.png", "content": "probe", "mime_type": "image/png"})
    boundary = content_type.split("boundary=")[1]
    assert content_type.startswith("multipart/form-data; ")
    assert body.startswith(f"--{boundary}\r\n".encode()) and body.endswith(f"\r\n--{boundary}--\r\n".encode())
    assert b'name="files"; filename="i2m-probe.png"' in body and b"Content-Type: image/png\r\n\r\nprobe\r\n" in body
