"""A drift run as node_exporter textfile-collector metrics, with prometheus_client."""

from collections import Counter
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile


def registry_of(document: dict) -> CollectorRegistry:
    """The drift run's metrics in a registry of their own.

    document: a run's JSON document (drift, hosts, unreachable_hosts, exit_code, started_epoch,
    duration_s; lock_held if present). Returns the registry; raises KeyError when the document lacks one of those keys.
    """
    registry = CollectorRegistry()
    items = Gauge("i2m_drift_items", "Drift items found on a stack by the last i2m-ops drift run.",
                  ["host", "service", "check"], registry=registry)
    drifted = Gauge("i2m_drift_host_drifted", "1 when the host has at least one drift item, 0 when it has none.",
                    ["host"], registry=registry)
    unreachable = Gauge("i2m_drift_host_unreachable", "1 when the host could not be reached.", ["host"], registry=registry)
    for host, host_items in sorted(document.get("drift", {}).items()):
        counts = Counter((item["service"], item["check"]) for item in host_items if not item["ok"])
        for (service, check), count in sorted(counts.items()):
            items.labels(host, service, check).set(count)
        drifted.labels(host).set(int(bool(counts)))
    in_progress = Gauge("i2m_drift_remediation_in_progress",
                        "1 when a remediation held the stack's lock, so nothing was read from it (no drift item).",
                        ["host"], registry=registry)
    for host in sorted(set(document["hosts"]) | set(document["unreachable_hosts"])):
        unreachable.labels(host).set(int(host in document["unreachable_hosts"]))
        in_progress.labels(host).set(int(host in document.get("lock_held", {})))
    Gauge("i2m_drift_exit_code", "Exit code of the last run (0 clean, 1 error, 2 drift, 3 could not start, "
          "4 unreachable, 5 remediation in progress).",
          registry=registry).set(document["exit_code"])
    Gauge("i2m_drift_last_run_timestamp_seconds", "When the last run started.",
          registry=registry).set(document["started_epoch"])
    Gauge("i2m_drift_last_run_duration_seconds", "How long the last run took.",
          registry=registry).set(document["duration_s"])
    return registry


def write_textfile(path: Path, document: dict) -> None:
    """Writes the document's metrics to path atomically (prometheus_client writes a temporary
    file beside it, then renames it): the collector never reads a half-written file.

    Creates the parent folder if needed; raises OSError when it cannot be written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry_of(document))
