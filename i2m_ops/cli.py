"""i2m-ops: the playbooks as commands, with one report and one exit code per run."""

import contextlib
import functools
import inspect
import json
import os
import re
import secrets
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import MISSING, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand, TyperGroup

from i2m_ops import __version__, inputs, prometheus, report
from i2m_ops.errors import CannotStart
from i2m_ops.folding import StageResult
from i2m_ops.interrupts import INTERRUPTED_EXIT, Interrupted, Interrupts, StopNow, wait_for_playbook_processes
from i2m_ops.lock import InventoryLock
from i2m_ops.progress import Progress
from i2m_ops.redact import redact_data, redact_tree
from i2m_ops.runner import REPO, run_stage

RUN_ID = re.compile(r"^\d{8}T\d{6}Z-[a-z]+-[0-9a-f]{4}$")
SERVICE_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")

# typer's own copy of click: its usage errors are not the click package's.
UsageError = typer.BadParameter.__mro__[1]


class _FlagsWithoutType:
    """Flags (-h, --json, -v, --install-completion, ...) shown without a <bool> or <int> beside them."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if (getattr(param, "is_flag", False) or getattr(param, "count", False)) and param.metavar is None:
                param.metavar = ""
        return params


class _Commands(_FlagsWithoutType, TyperGroup):
    """Bad arguments exit 3 (could not start), as documented, not click's 2 (which means drift)."""

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except UsageError as error:
            error.exit_code = 3
            raise

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UsageError as error:
            error.exit_code = 3
            raise


class _Command(_FlagsWithoutType, TyperCommand):
    """A command whose flags show no <bool>."""


app = typer.Typer(help=__doc__, cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]},
                  no_args_is_help=True, pretty_exceptions_enable=False)

Inventory = Annotated[Path, typer.Option("-i", "--inventory", metavar="PATH", envvar="I2M_OPS_INVENTORY",
                                         help="Inventory file or folder.")]
Limit = Annotated[str | None, typer.Option("-l", "--limit", metavar="PATTERN", help="Only these hosts (an Ansible pattern).")]
ExtraVars = Annotated[list[str] | None, typer.Option("-e", "--extra-vars", metavar="VARS",
                                                     help="KEY=VALUE, a JSON/YAML mapping or @FILE; repeatable.")]
VaultFile = Annotated[Path | None, typer.Option("--vault-password-file", metavar="FILE", help="File holding the vault password.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the run's JSON document instead of the summary.")]
ArtifactsDir = Annotated[Path, typer.Option("--artifacts-dir", metavar="DIR", help="Where the per-run folders go.")]
KeepRuns = Annotated[int, typer.Option("--keep-runs", min=1, metavar="N", help="How many run folders to keep.")]
Verbose = Annotated[int, typer.Option("-v", "--verbose", count=True, help="More Ansible output in the run's artifacts.")]

DEFAULT_INVENTORY = REPO / "inventory" / "local"
DEFAULT_ARTIFACTS = REPO / ".state" / "runs"


class Strategy(str, Enum):
    build_first = "build-first"
    rolling = "rolling"
    report = "report"


@dataclass
class RunOptions:
    """The options every command takes: where it runs, with what, and where its report goes."""

    inventory: Path = DEFAULT_INVENTORY
    limit: str | None = None
    extra_vars: list = field(default_factory=list)
    vault_password_file: Path | None = None
    as_json: bool = False
    artifacts_dir: Path = DEFAULT_ARTIFACTS
    keep_runs: int = 20
    verbose: int = 0


# How each RunOptions field appears on the command line; its default is the dataclass's.
OPTION_TYPES = {"inventory": Inventory, "limit": Limit, "extra_vars": ExtraVars, "vault_password_file": VaultFile,
                "as_json": JsonOut, "artifacts_dir": ArtifactsDir, "keep_runs": KeepRuns, "verbose": Verbose}
COMMON_PARAMETERS = [inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, annotation=OPTION_TYPES[option.name],
                                       default=None if option.default is MISSING else option.default)
                     for option in fields(RunOptions)]


def command(name: str | None = None):
    """Registers a playbook command: its function takes a RunOptions first, then its own options.

    The options every command shares are added to the command line here, once; the function
    receives them folded into one RunOptions.
    """

    def register(function):
        own = [parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)
               for parameter in list(inspect.signature(function, eval_str=True).parameters.values())[1:]]

        @functools.wraps(function)
        def wrapper(**values):
            shared = {parameter.name: values.pop(parameter.name) for parameter in COMMON_PARAMETERS}
            return function(RunOptions(**{**shared, "extra_vars": shared["extra_vars"] or []}), **values)

        wrapper.__signature__ = inspect.Signature(COMMON_PARAMETERS + own)
        return app.command(name, cls=_Command)(wrapper)

    return register


def _version(show: bool) -> None:
    if show:
        typer.echo(f"i2m-ops {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False):
    """Keeps the image2model compose stack configured and healthy."""


def _rotate(artifacts_dir: Path, keep: int) -> None:
    runs = sorted(path for path in artifacts_dir.iterdir() if path.is_dir() and RUN_ID.match(path.name))
    for old in runs[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


# Stages whose interrupt leaves a stack half changed: playbooks/recover.yml runs after them.
RECOVERED_PLAYBOOKS = {"remediate.yml"}


def execute(command_name: str, playbook: str, options: RunOptions, *, check: bool = False, more_vars: dict | None = None,
            follow_up=None, output=None, changes_hosts: bool = True, own_arguments: list | None = None) -> None:
    """Every command: check inputs, take the lock, run the playbook, write and print the report.

    command_name names the run and its artifacts; playbook is a file of playbooks/; options are
    the shared options; check runs Ansible in check mode; more_vars override the -e variables.
    follow_up, given the first stage's result, may name a second stage, its playbook, the hosts to
    limit it to and its own variables; it runs under the same lock. output, given the run's
    document, prints or writes it.
    changes_hosts: take the inventory's lock (False for read-only runs: they never wait for a
    remediation, and report a stack whose lock it holds as "remediation in progress").
    own_arguments: the command's own options as typed (remediate's --strategy, --services), for
    the commands printed after a second interrupt.
    SIGINT or SIGTERM (see i2m_ops/interrupts.py): the playbook is stopped, no further stage
    starts, a remediation is recovered (playbooks/recover.yml), and the run exits 130.
    Always ends with typer.Exit: the documented exit code (3 when the run could not start).
    """
    started = time.time()
    interrupts = Interrupts()
    stages, run_dir, run_id, limits = [], None, None, {}
    with interrupts:
        try:
            variables = {**inputs.parse_extra_vars(options.extra_vars), **(more_vars or {})}
            inputs.check_vault_password_file(options.vault_password_file)
            lock = (InventoryLock(REPO / ".state" / "locks", options.inventory, f"i2m-ops {command_name}")
                    if changes_hosts else contextlib.nullcontext())
            with lock, tempfile.TemporaryDirectory(prefix="i2m-ops-vars-") as vars_dir:
                inventory_data = inputs.load_inventory(options.inventory, options.vault_password_file)
                hidden = inputs.secret_values(inventory_data, variables, options.vault_password_file)
                run_id = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(started))}-{command_name}-{secrets.token_hex(2)}"
                interrupts.run_id = run_id
                run_dir = options.artifacts_dir / run_id
                run_dir.mkdir(parents=True)
                common = inputs.extra_vars_arguments(options.extra_vars, Path(vars_dir), more_vars or {})
                common += ["--check"] if check else []
                common += ["--forks", str(inputs.forks(inventory_data))]
                common += ["--vault-password-file", str(options.vault_password_file)] if options.vault_password_file else []
                common += ["-" + "v" * options.verbose] if options.verbose else []
                progress = None if options.as_json else Progress()

                def start(name: str, stage_playbook: str, limit: str | None, more: list, recovery: bool = False):
                    """Runs one stage, unless a signal came first (a signal between stages starts none, but
                    the recovery); listed as stopped until it ends, for a second signal that stops it."""
                    stages.append(StageResult(name=name, playbook=f"playbooks/{stage_playbook}", status="stopped"))
                    limits[name] = limit
                    if interrupts.received and not recovery:
                        stages[-1].status = "unstarted"
                        return None
                    stages[-1] = _stage(name, stage_playbook, options.inventory, run_dir,
                                        common + more + (["-l", limit] if limit else []), progress, interrupts)
                    return stages[-1]

                first = start(command_name, playbook, options.limit, [])
                if follow_up and first and not interrupts.received:
                    with interrupts.prompting():
                        next_stage = follow_up(first)
                    if next_stage:
                        name, next_playbook, hosts, next_vars = next_stage
                        # The follow-up asked, where it needed to.
                        start(name, next_playbook, ",".join(hosts), ["-e", json.dumps({"i2m_confirm": False, **next_vars})])
                cut = next((stage for stage in stages if stage.interrupted), None)
                if cut and Path(cut.playbook).name in RECOVERED_PLAYBOOKS:
                    wait_for_playbook_processes(run_id)
                    start("recover", "recover.yml", limits[cut.name], ["-e", json.dumps({"i2m_recover_run_id": run_id})],
                          recovery=True)
        except CannotStart as error:
            if not interrupts.received:
                typer.echo(f"i2m-ops {command_name}: cannot start: {error}", err=True)
                raise typer.Exit(3) from None
        except Interrupted:
            pass  # at a prompt, between stages: the stages after it do not start
        except StopNow:
            pass  # a second signal: every process of the run is gone; what to run next is printed below
        interrupts.done()  # from here on, a signal stops nothing: the report takes a moment
        if run_dir is None:
            typer.echo(f"i2m-ops {command_name}: {interrupts.received}: stopped before it started: nothing on the hosts "
                       "was changed", err=True)
            raise typer.Exit(INTERRUPTED_EXIT)
        interrupted = _interruption(interrupts, stages, options, command_name, own_arguments or [], limits)
        code = INTERRUPTED_EXIT if interrupted else report.exit_code(stages)
        meta = {"run_id": run_id, "command": command_name, "inventory": str(options.inventory), "limit": options.limit,
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)), "started_epoch": int(started),
                "duration_s": round(time.time() - started, 2), "artifacts": str(run_dir)}
        document = redact_data(_runnable_commands(report.run_document(meta, stages, code, interrupted), options), hidden)
        report.write(run_dir, document)
        redact_tree(run_dir, hidden)
        _rotate(options.artifacts_dir, options.keep_runs)
        if interrupted.get("stopped_at_once"):
            _print_recovery_commands(command_name, interrupts.received, interrupted["commands"], options.extra_vars)
        (output or _print)(document, options.as_json)
    raise typer.Exit(code)


def _interruption(interrupts: Interrupts, stages: list, options: RunOptions, command_name: str, own_arguments: list,
                  limits: dict) -> dict:
    """The run document's `interrupted`: {} when no signal stopped anything; else the signal, the
    stage it reached ("" between stages), whether a second one stopped the run at once (with the
    commands that recover and remediate again), and per host what the run had reached there."""
    stopped = interrupts.stopped_at_once
    if not interrupts.received or (interrupts.after_stages and not stopped):
        return {}
    if not (stopped or interrupts.prompted or any(stage.interrupted or stage.status == "unstarted" for stage in stages)):
        return {}  # it came as the last stage ended: nothing was stopped
    hosts = {host: reached for stage in stages for host, reached in stage.interrupted_hosts.items()}
    cut = next((stage for stage in stages if stage.interrupted or stage.status == "stopped"), None)
    recovering = cut is not None and (Path(cut.playbook).name in RECOVERED_PLAYBOOKS or cut.name == "recover")
    commands = []
    if stopped and recovering:
        remediate_limit = limits.get(cut.name) if cut.name != "recover" else next(iter(limits.values()), None)
        commands = [_command_line("recover", options, options.limit),
                    _command_line("remediate", options, remediate_limit, own_arguments if command_name == "remediate" else [])]
    return {"signal": interrupts.received, "stage": interrupts.stage or "", "stopped_at_once": stopped,
            "hosts": hosts, "commands": commands}


def _printable_options(options: RunOptions) -> list:
    """The run's -e @FILE items and vault password file, as absolute paths, for a command printed
    to be pasted: a -e value given inline may hold a secret, so it is never printed."""
    words = []
    for item in options.extra_vars:
        if item.startswith("@"):
            words += ["-e", f"@{Path(item[1:]).expanduser().resolve()}"]
    return words + (["--vault-password-file", str(options.vault_password_file.resolve())] if options.vault_password_file else [])


def _command_line(command_name: str, options: RunOptions, limit: str | None, own_arguments: list = ()) -> str:
    """An i2m-ops command with the run's options, as an operator pastes it: absolute paths, and
    -e @FILE items only (see _printable_options)."""
    words = [str(Path(sys.executable).parent / "i2m-ops"), command_name, "-i", str(options.inventory.resolve())]
    words += ["-l", limit] if limit else []
    words += _printable_options(options)
    words += ["--artifacts-dir", str(options.artifacts_dir.resolve()), *own_arguments]
    return shlex.join(words)


def _runnable_commands(document: dict, options: RunOptions) -> dict:
    """The `i2m-ops` commands of a diagnosis (each cause's command, and those its action quotes;
    the diagnose role gives their -i and -l) made to run as printed: the CLI by its absolute path,
    with _printable_options. Where -e values were typed inline, the action says to add them.
    Returns the document, changed in place."""
    extra = shlex.join(_printable_options(options))
    inline = sum(not item.startswith("@") for item in options.extra_vars)
    cli = shlex.quote(str(Path(sys.executable).parent / "i2m-ops"))

    def runnable(command: str) -> str:
        return f"{cli} {command.removeprefix('i2m-ops ')}" + (f" {extra}" if extra else "")

    for found in document.get("diagnosis", {}).values():
        for cause in found.get("causes", []):
            cause["action"] = re.sub(r"`(i2m-ops [^`]+)`", lambda match: f"`{runnable(match[1])}`", cause["action"])
            if inline and "i2m-ops " in cause["action"]:
                cause["action"] += f" (Add the {inline} -e value(s) typed inline: they are not printed, as they may hold secrets.)"
            if cause.get("command", "").startswith("i2m-ops "):
                cause["command"] = runnable(cause["command"])
    return document


def _print_recovery_commands(command_name: str, signal_name: str, commands: list, extra_vars: list) -> None:
    inline = sum(not item.startswith("@") for item in extra_vars)
    typer.echo(f"\ni2m-ops {command_name}: stopped at once by a second signal ({signal_name} first): the recovery did not "
               "run, so the stack may be half changed and its lock is still held.\n"
               "To recover (stops the build, puts back what the run changed, verifies, releases the lock):\n"
               f"  {commands[0]}\nThen, to remediate again:\n  {commands[1]}"
               + (f"\n(Add the {inline} -e value(s) typed inline to both: they are not printed, as they may hold secrets.)"
                  if inline else ""), err=True)


def _stage(name: str, playbook: str, inventory: Path, run_dir: Path, playbook_args: list, progress: Progress | None,
           interrupts: Interrupts):
    """One stage, under the live progress display when there is one; interrupts learns the
    playbook's pid from its events, and marks the stage interrupted when a signal stopped it."""

    def observe(stage_name: str, event: dict) -> None:
        interrupts.observe(stage_name, event)
        if progress:
            progress(stage_name, event)

    interrupts.begin(name)
    with progress.live() if progress else contextlib.nullcontext():
        stage = run_stage(name, playbook, inventory=inventory.resolve(), run_dir=run_dir,
                          playbook_args=playbook_args, on_event=observe)
    interrupts.end()
    if interrupts.received and interrupts.stage == name and stage.rc != 0:
        stage.interrupted, stage.status, stage.error = True, "interrupted", ""
    return stage


def _print(document: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return
    typer.echo(report.markdown(document).rstrip())
    typer.echo(f"\nReport: {document['artifacts']}/report.md  JSON: {document['artifacts']}/run.json")


def _service_names(values: list[str] | None) -> list[str]:
    """--services backend,worker or --services backend --services worker: the names, in order."""
    names = [name.strip() for value in values or [] for name in value.split(",") if name.strip()]
    for name in names:
        if not SERVICE_NAME.match(name):
            raise typer.BadParameter(f"{name!r} is not a compose service name", param_hint="--services")
    return list(dict.fromkeys(names))


@command()
def remediate(options: RunOptions,
              strategy: Annotated[Strategy | None, typer.Option(
                  "--strategy", case_sensitive=False, show_default=False,
                  help="build-first: build --no-cache while the old containers keep serving, then recreate (the "
                       "default, unless the inventory sets i2m_remediate_strategy). rolling: new containers healthy "
                       "beside the old before the old go (no downtime; see roles/compose/README.md). report: the "
                       "report's order, down first, the site down for the whole build.")] = None,
              services: Annotated[list[str] | None, typer.Option(
                  "--services", metavar="NAMES", show_default=False,
                  help="Rebuild these compose services, comma-separated or repeated (default: the inventory's "
                       "i2m_rebuild_services, on the stand-in backend).")] = None):
    """Env file, build --no-cache, recreate the containers, then verify; rolls back on failure.

    By default (build-first) the old containers keep serving during the build; the site is down only while the containers are recreated.
    """
    more_vars, own_arguments = {"i2m_confirm": False}, []
    if strategy:
        more_vars["i2m_remediate_strategy"] = strategy.value
        own_arguments += ["--strategy", strategy.value]
    if names := _service_names(services):
        more_vars["i2m_rebuild_services"] = names
        own_arguments += ["--services", ",".join(names)]
    execute("remediate", "remediate.yml", options, more_vars=more_vars, own_arguments=own_arguments)


@command()
def recover(options: RunOptions):
    """Recover each stack whose lock a stopped run left (its holder gone): stop the build, undo its changes, verify, unlock.

    A remediation interrupted by SIGINT or SIGTERM recovers by itself; this is for one stopped at once (a second
    Ctrl-C, SIGKILL). A lock held by a live run is only shown (exit 5).
    """
    execute("recover", "recover.yml", options)


@command()
def deploy(options: RunOptions,
           check: Annotated[bool, typer.Option("--check", help="Ansible check mode: report what would change.")] = False):
    """Render the env file and bring the stack up, building only missing images."""
    execute("deploy", "deploy.yml", options, check=check, changes_hosts=not check)


def _read_only_command(name: str, playbook: str, summary: str) -> None:
    """verify, audit and diagnose: the shared options only, and nothing on the hosts changes."""

    def read_only(options: RunOptions):
        execute(name, playbook, options, changes_hosts=False)

    read_only.__doc__ = summary
    command(name)(read_only)


_read_only_command("verify", "verify.yml", "Check the running stack, changing nothing: in-container env, endpoints, logs.")
_read_only_command("audit", "audit.yml", "Show the audit log kept beside each stack: who remediated, when, and how it ended.")
_read_only_command("diagnose", "diagnose.yml",
                   "Gather the evidence and name the likely cause, changing nothing: exit 0 no fault, 1 a fault found.")


class DriftFormat(str, Enum):
    text = "text"
    json = "json"
    prometheus = "prometheus"


@command()
def drift(options: RunOptions,
          output_format: Annotated[DriftFormat, typer.Option("--format", case_sensitive=False,
                                                             help="text (the report), json (the run's document) or "
                                                                  "prometheus (node_exporter textfile, with --output).")] = DriftFormat.text,
          output: Annotated[Path | None, typer.Option("--output", metavar="FILE",
                                                      help="With --format prometheus: the textfile to write, atomically.")] = None,
          remediate_drifted: Annotated[bool, typer.Option("--remediate", help="Then remediate the drifted hosts.")] = False,
          yes: Annotated[bool, typer.Option("--yes", "-y", help="With --remediate: do not ask first.")] = False):
    """What would change and what is stale, changing nothing: exit 0 clean, 2 drift, 1 error, 4 unreachable."""
    if output_format is DriftFormat.prometheus and output is None:
        typer.echo("i2m-ops drift: cannot start: --format prometheus needs --output PATH (a .prom file)", err=True)
        raise typer.Exit(3)

    def remediate_drifted_hosts(stage):
        hosts = sorted({item["host"] for item in report.drifted_items(stage.drift)})
        if not remediate_drifted or not hosts or stage.failed_tasks:
            return None
        if not yes and not (sys.stdin.isatty() and typer.confirm(f"Remediate {', '.join(hosts)} (build --no-cache, recreate)?")):
            typer.echo("i2m-ops drift: remediation not confirmed (use --yes for unattended runs)", err=True)
            return None
        return "remediate", "remediate.yml", hosts, {}

    def emit(document, _as_json):
        if output_format is DriftFormat.prometheus:
            prometheus.write_textfile(output, document)
            typer.echo(f"i2m-ops drift: exit {document['exit_code']} ({document['outcome']}); metrics in {output}")
        else:
            _print(document, output_format is DriftFormat.json or options.as_json)

    options.as_json = options.as_json or output_format is not DriftFormat.text
    execute("drift", "drift.yml", options, follow_up=remediate_drifted_hosts, output=emit, changes_hosts=remediate_drifted)


@command()
def unlock(options: RunOptions,
           yes: Annotated[bool, typer.Option("--yes", "-y", help="Break the locks without asking.")] = False):
    """Show who holds each stack's lock, then break it, asking first unless --yes: for a run that is gone."""

    def break_held_locks(stage):
        hosts = sorted(stage.lock_held)
        if not hosts or stage.failed_tasks:
            return None
        for host in hosts:
            typer.echo(f"{host}: the stack's lock is held by {stage.lock_held[host]}", err=True)
        question = f"Break the lock of {', '.join(hosts)}? Only if the run holding it is gone"
        if not yes and not (sys.stdin.isatty() and typer.confirm(question)):
            typer.echo("i2m-ops unlock: not confirmed, the locks stay (--yes breaks them without asking)", err=True)
            return None
        return "break-lock", "unlock.yml", hosts, {"stack_guard_break": True}

    execute("unlock", "unlock.yml", options, follow_up=break_held_locks)


@app.command("report", cls=_Command)
def show_report(run: Annotated[str, typer.Argument(metavar="RUN", help="A run id, or the path of a run folder.")],
                artifacts_dir: ArtifactsDir = DEFAULT_ARTIFACTS, as_json: JsonOut = False):
    """Render a stored run again."""
    folder = Path(run) if os.sep in run else artifacts_dir / run
    document_path = folder / "run.json"
    if not document_path.is_file():
        typer.echo(f"i2m-ops report: cannot start: no run.json in {folder}", err=True)
        raise typer.Exit(3)
    document = json.loads(document_path.read_text())
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False) if as_json else report.markdown(document))
