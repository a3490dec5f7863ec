"""Folds ansible-runner events, as they stream, into what a run's report needs.

Nothing is kept per event: memory stays flat however long the run. The playbooks publish their
outcomes with set_stats; human output is never parsed.
"""

from dataclasses import dataclass, field

STAT_NAMES = {"ok": "ok", "changed": "changed", "failures": "failed", "dark": "unreachable",
              "skipped": "skipped", "rescued": "rescued", "ignored": "ignored"}
PREFLIGHT_PLAY_PREFIX = "Preflight - inputs"


@dataclass
class StageResult:
    name: str
    playbook: str
    status: str = "unstarted"
    rc: int | None = None
    duration_s: float = 0.0
    hosts: dict = field(default_factory=dict)
    failed_tasks: list = field(default_factory=list)
    unreachable: dict = field(default_factory=dict)
    checks: dict = field(default_factory=dict)
    drift: dict = field(default_factory=dict)
    diagnosis: dict = field(default_factory=dict)
    audit: dict = field(default_factory=dict)
    # host -> the holder of its stack's lock, held by another run
    lock_held: dict = field(default_factory=dict)
    # host -> the holder of the lock `unlock` broke
    lock_broken: dict = field(default_factory=dict)
    # recover.yml: host -> what the interrupted run had reached there, and what the recovery did
    interrupted_hosts: dict = field(default_factory=dict)
    recovery: dict = field(default_factory=dict)
    # a signal stopped this stage's playbook before its end
    interrupted: bool = False
    error: str = ""

    @property
    def failed_in_preflight(self) -> bool:
        return any(task["play"].startswith(PREFLIGHT_PLAY_PREFIX) for task in self.failed_tasks)

    @property
    def refused_by_lock(self) -> bool:
        """A host could not take its stack's lock (a remediation stopped before changing it)."""
        return any(task["host"] in self.lock_held for task in self.failed_tasks)


STDERR_LINES = 5


def _message(result: dict) -> str:
    """A failed task's message; for a failed command (compose's "non-zero return code"), followed by
    the last STDERR_LINES lines of what the command said, where the reason is."""
    if result.get("censored"):
        return result["censored"]
    message = result.get("msg") or result.get("stderr") or result.get("reason") or "failed"
    if isinstance(message, list):
        message = "\n".join(str(line) for line in message)
    said = [line.rstrip() for line in str(result.get("stderr") or "").splitlines() if line.strip()][-STDERR_LINES:]
    if said and message != result.get("stderr"):
        message = f"{str(message).strip()}; the command said:\n" + "\n".join(said)
    return str(message).strip()


class EventFolder:
    """An ansible-runner event handler: call it with each event; it always returns True.

    on_event, if given, is called with (stage name, event) for every event (the progress display).
    """

    def __init__(self, stage: StageResult, on_event=None):
        self.stage = stage
        self.on_event = on_event
        self.play = ""

    def __call__(self, event: dict) -> bool:
        kind = event.get("event")
        data = event.get("event_data", {})
        if self.on_event:
            self.on_event(self.stage.name, event)
        if kind == "playbook_on_play_start":
            self.play = data.get("name", "")
        elif kind == "runner_on_failed" and not data.get("ignore_errors"):
            self.stage.failed_tasks.append({"host": data.get("host"), "play": self.play, "task": data.get("task", ""),
                                            "message": _message(data.get("res", {}))})
        elif kind == "runner_on_unreachable":
            self.stage.unreachable[data.get("host")] = _message(data.get("res", {}))
        elif kind == "playbook_on_stats":
            self._fold_stats(data)
        return True

    def _fold_stats(self, data: dict) -> None:
        for runner_name, name in STAT_NAMES.items():
            for host, count in (data.get(runner_name) or {}).items():
                self.stage.hosts.setdefault(host, dict.fromkeys(STAT_NAMES.values(), 0))[name] = count
        published = data.get("artifact_data") or {}
        self.stage.checks.update(published.get("i2m_checks", {}))
        self.stage.drift.update(published.get("i2m_drift", {}))
        self.stage.diagnosis.update(published.get("i2m_diagnosis", {}))
        self.stage.audit.update(published.get("i2m_audit", {}))
        self.stage.lock_held.update(published.get("i2m_lock_held", {}))
        self.stage.lock_broken.update(published.get("i2m_lock_broken", {}))
        self.stage.interrupted_hosts.update(published.get("i2m_interrupted", {}))
        self.stage.recovery.update(published.get("i2m_recovery", {}))
