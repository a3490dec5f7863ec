"""i2m-ops: the playbooks as commands, with one report and one exit code per run."""

import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
import yaml

from i2m_ops import __version__, inputs, prometheus, report
from i2m_ops.errors import CannotStart
from i2m_ops.lock import InventoryLock
from i2m_ops.redact import redact_text, redact_tree
from i2m_ops.runner import REPO, run_stage

RUN_ID = re.compile(r"^\d{8}T\d{6}Z-[a-z]+-[0-9a-f]{4}$")

app = typer.Typer(help=__doc__, context_settings={"help_option_names": ["-h", "--help"]},
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

Inventory = Annotated[Path, typer.Option("-i", "--inventory", help="Inventory file or folder.")]
Limit = Annotated[str | None, typer.Option("-l", "--limit", help="Only these hosts (an Ansible pattern).")]
ExtraVars = Annotated[list[str] | None, typer.Option("-e", "--extra-vars", help="KEY=VALUE, a JSON/YAML mapping or @FILE; repeatable.")]
VaultFile = Annotated[Path | None, typer.Option("--vault-password-file", help="File holding the vault password.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the run's JSON document instead of the summary.")]
ArtifactsDir = Annotated[Path, typer.Option("--artifacts-dir", help="Where the per-run folders go.")]
KeepRuns = Annotated[int, typer.Option("--keep-runs", min=1, help="How many run folders to keep.")]
Verbose = Annotated[int, typer.Option("-v", "--verbose", count=True, help="More Ansible output in the run's artifacts.")]
Check = Annotated[bool, typer.Option("--check", help="Ansible check mode: report what would change.")]

DEFAULT_INVENTORY = REPO / "inventory" / "local"
DEFAULT_ARTIFACTS = REPO / ".state" / "runs"


def _version(show: bool) -> None:
    if show:
        typer.echo(f"i2m-ops {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False):
    """Keeps the image2model compose stack configured and healthy."""


class Progress:
    """On a terminal, one line rewritten in place (stage, host, task, elapsed); elsewhere, one
    plain line per task."""

    def __init__(self):
        self.last_task = None

    def __call__(self, stage: str, host: str, task: str, elapsed: float) -> None:
        if sys.stderr.isatty():
            line = f"[{elapsed:6.1f}s] {stage} | {host} | {task}"
            sys.stderr.write("\r\033[K" + line[: shutil.get_terminal_size().columns - 1])
        elif (stage, task) != self.last_task:
            sys.stderr.write(f"[{elapsed:6.1f}s] {stage}: {task}\n")
        self.last_task = (stage, task)
        sys.stderr.flush()


def _rotate(artifacts_dir: Path, keep: int) -> None:
    runs = sorted(path for path in artifacts_dir.iterdir() if path.is_dir() and RUN_ID.match(path.name))
    for old in runs[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def execute(command: str, playbook: str, *, inventory: Path, limit: str | None, extra_vars: list | None,
            vault_password_file: Path | None, as_json: bool, artifacts_dir: Path, keep_runs: int, verbose: int,
            check: bool = False, more_vars: dict | None = None, follow_up=None, output=None) -> None:
    """Every command: check inputs, take the lock, run the playbook, write and print the report.

    follow_up, given the first stage's result, may name a second playbook and the hosts to limit
    it to; it runs under the same lock. output, given the run's document, prints or writes it.
    """
    started = time.time()
    try:
        variables = {**inputs.parse_extra_vars(extra_vars or []), **(more_vars or {})}
        inputs.check_vault_password_file(vault_password_file)
        lock = InventoryLock(REPO / ".state" / "locks", inventory, f"i2m-ops {command}")
        with lock, tempfile.TemporaryDirectory(prefix="i2m-ops-vars-") as vars_dir:
            inventory_data = inputs.load_inventory(inventory, vault_password_file)
            hidden = inputs.secret_values(inventory_data, variables, vault_password_file)
            run_id = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(started))}-{command}-{secrets.token_hex(2)}"
            run_dir = artifacts_dir / run_id
            run_dir.mkdir(parents=True)
            # Extra vars reach ansible-playbook in a 0600 file, never in its argument list.
            vars_file = Path(vars_dir) / "extra-vars.yml"
            vars_file.touch(mode=0o600)
            vars_file.write_text(yaml.safe_dump(variables))
            common = ["-e", f"@{vars_file}"] + (["--check"] if check else [])
            common += ["--vault-password-file", str(vault_password_file)] if vault_password_file else []
            common += ["-" + "v" * verbose] if verbose else []
            progress = None if as_json else Progress()
            stages = [run_stage(command, playbook, inventory=inventory.resolve(), run_dir=run_dir,
                                playbook_args=common + (["-l", limit] if limit else []), on_task=progress)]
            next_stage = follow_up(stages[0]) if follow_up else None
            if next_stage:
                name, next_playbook, hosts = next_stage
                confirmed = ["-e", "i2m_confirm=false"]  # the follow-up asked, where it needed to
                stages.append(run_stage(name, next_playbook, inventory=inventory.resolve(), run_dir=run_dir,
                                        playbook_args=common + confirmed + ["-l", ",".join(hosts)], on_task=progress))
    except CannotStart as error:
        typer.echo(f"i2m-ops {command}: cannot start: {error}", err=True)
        raise typer.Exit(3) from None
    if not as_json and sys.stderr.isatty():
        sys.stderr.write("\n")
    for stage in stages:
        for task in stage.failed_tasks:
            task["message"] = redact_text(task["message"], hidden)
        stage.unreachable = {host: redact_text(message, hidden) for host, message in stage.unreachable.items()}
        stage.error = redact_text(stage.error, hidden)
    code = report.exit_code(stages)
    meta = {"run_id": run_id, "command": command, "inventory": str(inventory), "limit": limit,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)), "started_epoch": int(started),
            "duration_s": round(time.time() - started, 2), "artifacts": str(run_dir)}
    document = report.run_document(meta, stages, code)
    report.write(run_dir, document)
    redact_tree(run_dir, hidden)
    _rotate(artifacts_dir, keep_runs)
    (output or _print)(document, as_json)
    raise typer.Exit(code)


def _print(document: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return
    typer.echo(report.markdown(document).rstrip())
    typer.echo(f"\nReport: {document['artifacts']}/report.md  JSON: {document['artifacts']}/run.json")


@app.command()
def remediate(inventory: Inventory = DEFAULT_INVENTORY, limit: Limit = None, extra_vars: ExtraVars = None,
              vault_password_file: VaultFile = None, as_json: JsonOut = False, artifacts_dir: ArtifactsDir = DEFAULT_ARTIFACTS,
              keep_runs: KeepRuns = 20, verbose: Verbose = 0,
              services: Annotated[list[str] | None, typer.Option("--services", help="Rebuild these services (default: i2m_rebuild_services).")] = None):
    """The report's runbook: env file, down, build --no-cache, up -d, then verify."""
    execute("remediate", "remediate.yml", inventory=inventory, limit=limit, extra_vars=extra_vars,
            vault_password_file=vault_password_file, as_json=as_json, artifacts_dir=artifacts_dir, keep_runs=keep_runs,
            verbose=verbose, more_vars={"i2m_confirm": False, **({"i2m_rebuild_services": services} if services else {})})


@app.command()
def deploy(inventory: Inventory = DEFAULT_INVENTORY, limit: Limit = None, extra_vars: ExtraVars = None,
           vault_password_file: VaultFile = None, as_json: JsonOut = False, artifacts_dir: ArtifactsDir = DEFAULT_ARTIFACTS,
           keep_runs: KeepRuns = 20, verbose: Verbose = 0, check: Check = False):
    """Render the env file and bring the stack up, building only missing images."""
    execute("deploy", "deploy.yml", inventory=inventory, limit=limit, extra_vars=extra_vars,
            vault_password_file=vault_password_file, as_json=as_json, artifacts_dir=artifacts_dir, keep_runs=keep_runs,
            verbose=verbose, check=check)


def _read_only_command(name: str, playbook: str, summary: str) -> None:
    """verify and diagnose: the shared options only, and nothing on the hosts changes."""

    def command(inventory: Inventory = DEFAULT_INVENTORY, limit: Limit = None, extra_vars: ExtraVars = None,
                vault_password_file: VaultFile = None, as_json: JsonOut = False,
                artifacts_dir: ArtifactsDir = DEFAULT_ARTIFACTS, keep_runs: KeepRuns = 20, verbose: Verbose = 0):
        execute(name, playbook, inventory=inventory, limit=limit, extra_vars=extra_vars,
                vault_password_file=vault_password_file, as_json=as_json, artifacts_dir=artifacts_dir,
                keep_runs=keep_runs, verbose=verbose)

    command.__doc__ = summary
    app.command(name)(command)


_read_only_command("verify", "verify.yml", "Check the running stack, changing nothing: in-container env, endpoints, logs.")
_read_only_command("audit", "audit.yml", "Show the audit log kept beside each stack: who remediated, when, and how it ended.")
_read_only_command("diagnose", "diagnose.yml",
                   "Gather the evidence and name the likely cause, changing nothing: exit 0 no fault, 1 a fault found.")


@app.command()
def drift(inventory: Inventory = DEFAULT_INVENTORY, limit: Limit = None, extra_vars: ExtraVars = None,
          vault_password_file: VaultFile = None, as_json: JsonOut = False, artifacts_dir: ArtifactsDir = DEFAULT_ARTIFACTS,
          keep_runs: KeepRuns = 20, verbose: Verbose = 0,
          output_format: Annotated[str, typer.Option("--format", help="text, json or prometheus.")] = "text",
          output: Annotated[Path | None, typer.Option("--output", help="With --format prometheus: the textfile to write, atomically.")] = None,
          remediate_drifted: Annotated[bool, typer.Option("--remediate", help="Then remediate the drifted hosts.")] = False,
          yes: Annotated[bool, typer.Option("--yes", "-y", help="With --remediate: do not ask first.")] = False):
    """What would change and what is stale, changing nothing: exit 0 clean, 2 drift, 1 error, 4 unreachable."""
    if output_format not in ("text", "json", "prometheus"):
        typer.echo(f"i2m-ops drift: cannot start: --format {output_format}: use text, json or prometheus", err=True)
        raise typer.Exit(3)
    if output_format == "prometheus" and output is None:
        typer.echo("i2m-ops drift: cannot start: --format prometheus needs --output PATH (a .prom file)", err=True)
        raise typer.Exit(3)

    def remediate_drifted_hosts(stage):
        hosts = sorted({item["host"] for item in report.drifted_items(stage.drift)})
        if not remediate_drifted or not hosts or stage.failed_tasks:
            return None
        if not yes and not (sys.stdin.isatty() and typer.confirm(f"Remediate {', '.join(hosts)} (down, build --no-cache, up -d)?")):
            typer.echo("i2m-ops drift: remediation not confirmed (use --yes for unattended runs)", err=True)
            return None
        return "remediate", "remediate.yml", hosts

    def emit(document, _as_json):
        if output_format == "prometheus":
            prometheus.write_atomically(output, prometheus.textfile(document))
            typer.echo(f"i2m-ops drift: exit {document['exit_code']} ({document['outcome']}); metrics in {output}")
        else:
            _print(document, output_format == "json" or as_json)

    execute("drift", "drift.yml", inventory=inventory, limit=limit, extra_vars=extra_vars, vault_password_file=vault_password_file,
            as_json=as_json or output_format != "text", artifacts_dir=artifacts_dir, keep_runs=keep_runs, verbose=verbose,
            follow_up=remediate_drifted_hosts, output=emit)


@app.command("report")
def show_report(run: Annotated[str, typer.Argument(help="A run id, or the path of a run folder.")],
                artifacts_dir: ArtifactsDir = DEFAULT_ARTIFACTS, as_json: JsonOut = False):
    """Render a stored run again."""
    folder = Path(run) if os.sep in run else artifacts_dir / run
    document_path = folder / "run.json"
    if not document_path.is_file():
        typer.echo(f"i2m-ops report: cannot start: no run.json in {folder}", err=True)
        raise typer.Exit(3)
    document = json.loads(document_path.read_text())
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False) if as_json else report.markdown(document))
