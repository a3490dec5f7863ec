"""One run's result: the JSON document (its JSON Schema: schema/run-1.json) and its Markdown report."""

import json
from dataclasses import asdict
from pathlib import Path

SCHEMA = "i2m-ops/run/1"
SCHEMA_FILE = Path(__file__).parent / "schema" / "run-1.json"
EXIT_MEANINGS = {0: "done, all checks passed", 1: "a step or check failed on at least one host",
                 2: "drift found", 3: "could not start", 4: "some hosts unreachable, none failed",
                 5: "remediation in progress: a stack's lock is held, nothing read from it",
                 130: "interrupted"}


def exit_code(stages: list) -> int:
    """The CLI's documented exit code, from what the stages folded (an interrupted run's, 130, is
    decided before: it comes first)."""
    for stage in stages:
        never_started = stage.status != "successful" and not stage.hosts and not stage.unreachable
        if stage.failed_in_preflight or stage.refused_by_lock or never_started:
            return 3
    if any(stage.failed_tasks or any(host["failed"] for host in stage.hosts.values()) for stage in stages):
        return 1
    if any(stage.unreachable for stage in stages):
        return 4
    if any(not item["ok"] for item in drifted_items(stages[-1].drift)):
        return 2
    if any(found["causes"] for found in stages[-1].diagnosis.values()):
        return 1
    broken = {host for stage in stages for host in stage.lock_broken}
    if any(set(stage.lock_held) - broken for stage in stages):
        return 5
    return 0 if all(stage.status == "successful" for stage in stages) else 1


def drifted_items(drift: dict) -> list:
    return [{**item, "host": host} for host, items in drift.items() for item in items if not item["ok"]]


def run_document(meta: dict, stages: list, code: int, interrupted: dict | None = None) -> dict:
    """interrupted: {} or the signal, the stage it reached, stopped_at_once, commands (see cli._interruption)."""
    checks, drift, diagnosis, audit, lock_held, lock_broken, recovery = {}, {}, {}, {}, {}, {}, {}
    for stage in stages:
        recovery.update(stage.recovery)
        lock_held.update(stage.lock_held)
        lock_broken.update(stage.lock_broken)
        checks.update(stage.checks)
        drift.update(stage.drift)
        diagnosis.update(stage.diagnosis)
        audit.update(stage.audit)
    return {
        "schema": SCHEMA,
        **meta,
        "exit_code": code,
        "outcome": EXIT_MEANINGS[code],
        "stages": [{key: value for key, value in asdict(stage).items() if key in ("name", "playbook", "status", "rc", "duration_s", "error")}
                   for stage in stages],
        "hosts": {host: counts for stage in stages for host, counts in stage.hosts.items()},
        "failed_tasks": [{**task, "stage": stage.name} for stage in stages for task in stage.failed_tasks],
        "unreachable_hosts": {host: message for stage in stages for host, message in stage.unreachable.items()},
        "checks": checks,
        "drift": drift,
        "diagnosis": diagnosis,
        "audit": audit,
        "lock_held": {host: holder for host, holder in lock_held.items() if host not in lock_broken},
        "lock_broken": lock_broken,
        "interrupted": interrupted or {},
        "recovery": recovery,
    }


def interrupt_summary(document: dict) -> list:
    """The Executive Summary's lines on an interrupt: the signal, where it came, what followed."""
    interrupted = document.get("interrupted") or {}
    if not interrupted:
        return []
    where = f"during the `{interrupted['stage']}` stage" if interrupted["stage"] else "between stages"
    unstarted = [stage["name"] for stage in document["stages"] if stage["status"] == "unstarted"]
    line = f"Interrupted by {interrupted['signal']} {where}"
    line += f"; not started: {', '.join(unstarted)}." if unstarted else "."
    if interrupted.get("stopped_at_once"):
        line += " A second signal stopped it at once: no recovery ran, the stack may be half changed and its lock held."
    elif document.get("recovery"):
        line += " The recovery (`playbooks/recover.yml`) ran: " + "; ".join(
            f"{host}: {done['action']}, the stack {done['state']}" for host, done in sorted(document["recovery"].items())) + "."
    return [line]


def check_line(check: dict) -> str:
    icon = "❌" if not check["ok"] else "⚠️" if check.get("warn") else "✅"
    return f"{icon} {check['service']} {check['check']} {check['item']}: {check['state']}"


def interrupt_steps(document: dict) -> list:
    """What to do after an interrupted run: the printed commands after a second signal; else by
    what the recovery did on each host."""
    interrupted = document.get("interrupted") or {}
    if not interrupted:
        return []
    if interrupted.get("commands"):
        recover, remediate = interrupted["commands"]
        return [f"A second signal stopped the run at once, before its recovery: recover with `{recover}` "
                "(stops the build, puts back what the run changed, verifies, releases the lock).",
                f"Then remediate again: `{remediate}`."]
    recovery = document.get("recovery") or {}
    if not recovery:
        what = "nothing on the hosts was changed" if document["command"] in ("verify", "audit", "diagnose") else \
            "what the stages that ran changed is listed above"
        return [f"The run was interrupted ({interrupted['signal']}); {what}. Run the command again when ready."]
    steps = []
    failed = sorted(host for host, done in recovery.items() if not done["ok"])
    unverified = sorted(host for host, done in recovery.items() if done["ok"] and not done["verified"])
    if failed:
        steps.append(f"The recovery failed on {', '.join(failed)}: its lock is released, the stack may be half changed. "
                     f"Look at it (`i2m-ops diagnose -l {','.join(failed)}`), then remediate again.")
    if unverified:
        steps.append(f"The stack of {', '.join(unverified)} is {'; '.join(recovery[h]['state'] for h in unverified)} but does "
                     "not pass verification (the checks above): remediate again, or look with `i2m-ops diagnose`.")
    if not failed and not unverified:
        steps.append("The interrupted run was recovered: " + "; ".join(f"{host}: {done['state']}, verified"
                                                                      for host, done in sorted(recovery.items()))
                     + f". Run `i2m-ops {document['command']}` again when ready: nothing holds the stack's lock.")
    return steps


def next_steps(document: dict) -> list:
    if document["exit_code"] == 130:
        return interrupt_steps(document)
    steps = []
    failed_env = sorted({(c["service"], c["item"]) for checks in document["checks"].values() for c in checks
                         if c["check"] == "env" and not c["ok"]})
    locked = document.get("lock_held", {})
    if document["exit_code"] == 3 and not locked:
        steps.append("Fix the input named above, then run the same command again: nothing on the hosts was changed.")
    if locked:
        steps.append(f"A remediation holds the lock of {', '.join(sorted(locked))}: nothing was read from or changed on "
                     "them. Run the command again once it ends; if its holder is gone, `i2m-ops unlock` breaks the lock.")
    if failed_env:
        names = ", ".join(f"{service} {key}" for service, key in failed_env)
        steps.append(f"The containers do not carry the intended environment ({names}): most likely stale containers. "
                     "Run `i2m-ops remediate` (env file, build --no-cache, recreate) with the same inventory.")
    drifted_hosts = sorted({item["host"] for item in drifted_items(document.get("drift", {}))})
    if drifted_hosts and not failed_env:
        steps.append(f"Drift on {', '.join(drifted_hosts)}: run `i2m-ops remediate -l {','.join(drifted_hosts)}` "
                     "(or `i2m-ops drift --remediate`) to apply the inventory.")
    if document["unreachable_hosts"]:
        steps.append("Check SSH access to the unreachable hosts (address, user, key), then run again with `-l` on them.")
    if document["failed_tasks"] and not failed_env and document["exit_code"] == 1:
        steps.append("Read the failed tasks above and the backend's logs (`docker compose -p <project> logs --tail 100 backend`).")
    if any(found["causes"] for found in document.get("diagnosis", {}).values()):
        steps.append("Apply the recommended action, then run `i2m-ops verify`; if the error persists, the logs "
                     "named in the evidence show the true cause.")
    if not steps:
        steps.append("Nothing to do. `i2m-ops verify` checks the stack again at any time, changing nothing.")
    return steps


def host_table(document: dict) -> list:
    """One row per host: Ansible's counts and how many of its checks passed."""
    if not document["hosts"]:
        return []
    rows = ["", "| host | ok | changed | failed | unreachable | checks passed |", "|---|---|---|---|---|---|"]
    for host, counts in sorted(document["hosts"].items()):
        items = (document["checks"].get(host, []) + document.get("drift", {}).get(host, [])
                 + document.get("diagnosis", {}).get(host, {}).get("evidence", []))
        passed = f"{sum(item['ok'] for item in items)}/{len(items)}" if items else "-"
        rows.append(f"| {host} | {counts['ok']} | {counts['changed']} | {counts['failed']} | {counts['unreachable']} | {passed} |")
    return rows


def diagnosis_sections(diagnosis: dict) -> list:
    """Most Likely Root Cause and Recommended Actions, per host, as in the seed report."""
    if not diagnosis:
        return []
    lines = ["## Most Likely Root Cause", ""]
    for host, found in sorted(diagnosis.items()):
        if not found["causes"]:
            lines.append(f"- {host}: no fault found.")
            continue
        top, others = found["causes"][0], found["causes"][1:]
        fixes = (f"Fixed by `{top['command']}`." if top["command"] else "No command fixes it: it needs a change by hand.") + (
            "" if top["remediation_fixes"] else " A remediation (build --no-cache, recreate) will NOT fix it.")
        lines.append(f"- **{host}: {top['cause']}.** {fixes}")
        lines += [f"  - evidence: {line}" for line in top["evidence"]]
        lines += [f"  - also possible: {cause['cause']}" for cause in others]
    lines += ["", "## Recommended Actions", ""]
    lines += [f"1. {host}: {found['causes'][0]['action']}" for host, found in sorted(diagnosis.items()) if found["causes"]]
    if not any(found["causes"] for found in diagnosis.values()):
        lines.append("1. None: the stack looks healthy.")
    return lines + [""]


def markdown(document: dict) -> str:
    lines = [f"# i2m-ops {document['command']}: {document['outcome']}", "", "## Executive Summary", "",
             f"`i2m-ops {document['command']}` on `{document['inventory']}` ended with exit code "
             f"{document['exit_code']} ({document['outcome']}) after {document['duration_s']} s, "
             f"on {len(document['hosts'])} host(s). Run {document['run_id']}."]
    lines += [f"The `{stage['name']}` stage stopped before reaching any host: {stage['error']}" for stage in document["stages"] if stage.get("error")]
    lines += interrupt_summary(document)
    lines += host_table(document)
    lines += ["", "## Investigation Results", ""]
    for host in sorted(set(document["hosts"]) | set(document["unreachable_hosts"])):
        checks = (document["checks"].get(host, []) + document.get("drift", {}).get(host, [])
                  + document.get("diagnosis", {}).get(host, {}).get("evidence", []))
        if host in document["unreachable_hosts"]:
            icon = "❌"
        elif any(not c["ok"] for c in checks) or document["hosts"].get(host, {}).get("failed"):
            icon = "❌"
        else:
            icon = "⚠️" if any(c.get("warn") for c in checks) else "✅"
        lines += [f"### {icon} {host}", ""]
        if host in document["unreachable_hosts"]:
            lines += [f"- ❌ unreachable: {document['unreachable_hosts'][host]}"]
        if host in document.get("lock_held", {}):
            lines += [f"- ⏳ remediation in progress, lock held by {document['lock_held'][host]}"]
        if host in document.get("lock_broken", {}):
            lines += [f"- 🔓 lock broken, it was held by {document['lock_broken'][host]}"]
        if host in (document.get("interrupted") or {}).get("hosts", {}):
            lines += [f"- ⏹️ interrupted {document['interrupted']['hosts'][host]}"]
        if host in document.get("recovery", {}):
            done = document["recovery"][host]
            icon = "✅" if done["ok"] and done["verified"] else "❌"
            lines += [f"- {icon} recovery: {done['action']}; the stack: {done['state']}, "
                      f"{'verified' if done['verified'] else 'not verified'}"]
        lines += [f"- {check_line(check)}" for check in checks]
        lines += [f"- ❌ task '{t['task']}' failed: {t['message']}" for t in document["failed_tasks"] if t["host"] == host]
        lines.append("")
    lines += diagnosis_sections(document.get("diagnosis", {}))
    for host, entries in sorted(document.get("audit", {}).items()):
        lines += [f"## Audit log of {host}", ""] + [f"    {entry}" for entry in entries or ["(empty)"]] + [""]
    lines += ["## Actions Taken", ""]
    for stage in document["stages"]:
        changed = ", ".join(f"{host} {counts['changed']}" for host, counts in document["hosts"].items())
        lines.append(f"- {stage['name']} (`{stage['playbook']}`): {stage['status']}, rc {stage['rc']}, "
                     f"{stage['duration_s']} s; changed tasks per host: {changed or 'none'}")
    lines += ["", "## Next Steps", ""] + [f"{number}. {step}" for number, step in enumerate(next_steps(document), 1)]
    return "\n".join(lines) + "\n"


def write(run_dir: Path, document: dict) -> None:
    (run_dir / "run.json").write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    (run_dir / "report.md").write_text(markdown(document))
