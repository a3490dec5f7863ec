"""A drift run in node_exporter's textfile-collector format, written atomically."""

import os
import tempfile
from pathlib import Path


def _label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def textfile(document: dict) -> str:
    lines = ["# HELP i2m_drift_items Drift items found on a stack by the last i2m-ops drift run.",
             "# TYPE i2m_drift_items gauge"]
    for host, items in sorted(document.get("drift", {}).items()):
        counts = {}
        for item in items:
            if not item["ok"]:
                key = (item["service"], item["check"])
                counts[key] = counts.get(key, 0) + 1
        for (service, check), count in sorted(counts.items()):
            lines.append(f'i2m_drift_items{{host="{_label(host)}",service="{_label(service)}",check="{_label(check)}"}} {count}')
    lines += ["# HELP i2m_drift_host_drifted 1 when the host has at least one drift item, 0 when it has none.",
              "# TYPE i2m_drift_host_drifted gauge"]
    for host, items in sorted(document.get("drift", {}).items()):
        lines.append(f'i2m_drift_host_drifted{{host="{_label(host)}"}} {int(any(not item["ok"] for item in items))}')
    lines += ["# HELP i2m_drift_host_unreachable 1 when the host could not be reached.",
              "# TYPE i2m_drift_host_unreachable gauge"]
    for host in sorted(set(document["hosts"]) | set(document["unreachable_hosts"])):
        lines.append(f'i2m_drift_host_unreachable{{host="{_label(host)}"}} {int(host in document["unreachable_hosts"])}')
    lines += ["# HELP i2m_drift_exit_code Exit code of the last run (0 clean, 1 error, 2 drift, 3 could not start, 4 unreachable).",
              "# TYPE i2m_drift_exit_code gauge", f"i2m_drift_exit_code {document['exit_code']}",
              "# HELP i2m_drift_last_run_timestamp_seconds When the last run started.",
              "# TYPE i2m_drift_last_run_timestamp_seconds gauge",
              f"i2m_drift_last_run_timestamp_seconds {document['started_epoch']}",
              "# HELP i2m_drift_last_run_duration_seconds How long the last run took.",
              "# TYPE i2m_drift_last_run_duration_seconds gauge",
              f"i2m_drift_last_run_duration_seconds {document['duration_s']}"]
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """Write beside the target, then rename: the collector never reads a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)
