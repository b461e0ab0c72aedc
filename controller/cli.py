"""The `cloudrun-reconciler` command line: validate, plan, apply, demo, emulator.

Owns arguments, exit codes and where output goes (results on stdout, errors on stderr). Exit codes follow
Terraform's `-detailed-exitcode` for `plan`: 0 in sync, 2 drift, 1 error; every other command exits 0 on
success and 1 on any error. Nothing here decides what to change; it calls the composer and prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from controller import __version__
from controller.errors import PermanentError, ReconcilerError
from controller.logs import configure_logging
from controller.plan import EXIT_ERROR
from controller.reconcile import ApplyResult, PassResult
from desired import CheckedDesired, DesiredStateError, Finding, ServiceKey, Severity, check_desired

if TYPE_CHECKING:  # the Google client libraries load only for the commands that call them
    from controller.cloudrun import CloudRunServices

__all__ = ["main"]

DEFAULT_FILE = "desired-state.yaml"
_LEVELS = ["debug", "info", "warning", "error"]


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error; here 2 means drift, so a typo must exit 1."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cloudrun-reconciler",
        description="Keep Google Cloud Run services as desired-state.yaml declares them.",
        epilog="Set CLOUD_RUN_EMULATOR_HOST=host:port to talk to a local emulator instead of Google Cloud.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level",
        default=None,
        choices=_LEVELS,
        help="structured logs on stderr (default: info for run, warning otherwise)",
    )
    common = _Parser(add_help=False)  # so `plan --log-level info` works as well
    common.add_argument(
        "--log-level", default=argparse.SUPPRESS, choices=_LEVELS, help="structured logs on stderr"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    validate = commands.add_parser(
        "validate", parents=[common], help="check a desired-state file; exit 1 on any error"
    )
    validate.add_argument("file", nargs="?", default=None)
    validate.add_argument(
        "-f", "--file", dest="file_option", default=None, help="same as the positional FILE"
    )
    validate.add_argument("-o", "--output", choices=["text", "json"], default="text")

    for name, text in (
        ("plan", "show what differs from the desired state; exit 0 in sync, 2 drift, 1 error"),
        ("apply", "plan, then write the declared fields of every drifted service"),
    ):
        command = commands.add_parser(name, parents=[common], help=text)
        command.add_argument("-f", "--file", default=DEFAULT_FILE)
        command.add_argument("-o", "--output", choices=["text", "json"], default="text")
        if name == "plan":
            command.add_argument(
                "--server-dry-run",
                action="store_true",
                help="also send each update with validate_only=true and report the API's verdict",
            )

    run = commands.add_parser(
        "run",
        parents=[common],
        help="the long-running controller: passes on an interval, HTTP health, metrics and status",
    )
    run.add_argument(
        "-f",
        "--file",
        default=os.environ.get("DESIRED_STATE_FILE", DEFAULT_FILE),
        help="the desired file, polled for changes (default: $DESIRED_STATE_FILE, else desired-state.yaml)",
    )
    run.add_argument(
        "--dry-run", action="store_true", help="plan every pass, log and report it, write nothing"
    )
    run.add_argument(
        "--interval", type=_seconds, default=None, help="between passes (default: the file's, else 30s)"
    )
    run.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT") or 8080),
        help="HTTP port for /healthz /readyz /metrics /status /reconcile (default: $PORT, else 8080)",
    )
    run.add_argument("--host", default="0.0.0.0", help="HTTP address to listen on")
    run.add_argument("--poll", type=_seconds, default=3.0, help="how often the file's hash is read (3s)")
    run.add_argument("--pass-timeout", type=_seconds, default=120.0, help="a pass starts no write after this")
    run.add_argument("--workers", type=int, default=4, help="services written at once (4)")
    run.add_argument(
        "--flap-limit",
        type=int,
        default=3,
        help="reverts of one field by others within an hour before the flap guard holds it (3)",
    )
    run.add_argument(
        "--manage-log-metric",
        action="store_true",
        help="create the log-based signal metrics the desired file names when they are missing",
    )
    run.add_argument(
        "--signal-delay",
        type=_seconds,
        default=120.0,
        help="signal windows end this long ago, as Monitoring ingests late (2m)",
    )
    run.add_argument(
        "--shutdown-grace",
        type=_seconds,
        default=8.0,
        help="on SIGTERM, how long in-flight writes may finish before they are abandoned (8s)",
    )

    deescalate = commands.add_parser(
        "deescalate",
        parents=[common],
        help="move an escalated service back to its SQLite URL and clear the latch (the one way back)",
    )
    deescalate.add_argument("service", metavar="SERVICE", help="a service name declared in the desired file")
    deescalate.add_argument("-f", "--file", default=DEFAULT_FILE)
    deescalate.add_argument("--dry-run", action="store_true", help="say what would change; write nothing")

    demo = commands.add_parser(
        "demo", parents=[common], help="plan and apply the reference service against an in-process emulator"
    )
    demo.add_argument("-f", "--file", default=DEFAULT_FILE)

    export = commands.add_parser(
        "export", parents=[common], help="write a desired-state document from live services"
    )
    export.add_argument(
        "services",
        nargs="+",
        metavar="SERVICE",
        help="a service name (with --project and --region) or projects/P/locations/R/services/S",
    )
    export.add_argument("--project")
    export.add_argument("--region")
    export.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    export.add_argument("--force", action="store_true", help="overwrite FILE if it exists")

    schema = commands.add_parser(
        "schema", parents=[common], help="print the JSON Schema of desired-state.yaml, or its field reference"
    )
    schema.add_argument("--write", metavar="FILE", help="write it to FILE instead of printing it")
    schema.add_argument(
        "--markdown",
        action="store_true",
        help="the field reference as a Markdown table (the README's) instead of the JSON Schema",
    )

    emulator = commands.add_parser("emulator", parents=[common], help="run the local Cloud Run API emulator")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8085)
    emulator.add_argument(
        "--admin-port",
        type=int,
        default=None,
        metavar="PORT",
        help="also serve the HTTP control endpoint (seed, edit, faults, points) on 127.0.0.1:PORT",
    )
    emulator.add_argument(
        "--seed",
        action="append",
        default=[],
        metavar="FILE",
        help="services to start with (repeatable): v2 Service JSON/YAML, v1 Knative YAML/JSON "
        "(`gcloud run services describe --format=yaml`), or a `gcloud run deploy` command line",
    )
    emulator.add_argument(
        "--seed-project", metavar="PROJECT", help="project of seeded services whose file names none"
    )
    emulator.add_argument(
        "--seed-region", metavar="REGION", help="region of seeded services whose file names none"
    )
    return parser


def _seconds(text: str) -> float:
    """A duration flag: `30s`, `0.5s`, `2m`, `1h30m`, or a plain number of seconds."""
    import re

    from desired import parse_duration

    try:
        plain = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)s?", text.strip())
        seconds = float(plain.group(1)) if plain else float(parse_duration(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} ({error})") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be above zero, got {text!r}")
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_level or ("info" if args.command == "run" else "warning"))
    handler = {
        "run": _run,
        "deescalate": _deescalate,
        "validate": _validate,
        "plan": _plan,
        "apply": _apply,
        "demo": _demo,
        "schema": _schema,
        "export": _export,
        "emulator": _emulator,
    }
    try:
        return handler[args.command](args)
    except DesiredStateError as error:
        _report_error(args, str(error), error.findings)
        return EXIT_ERROR
    except ReconcilerError as error:
        _report_error(args, f"error: {error}", ())
        return EXIT_ERROR
    except OSError as error:  # a file the command was told to write or read
        _report_error(args, f"error: {error.filename or ''}: {error.strerror or error}", ())
        return EXIT_ERROR


def _report_error(args: argparse.Namespace, text: str, findings: Sequence[Finding]) -> None:
    """On stderr for people; with `-o json`, also a JSON document on stdout, so a machine reads why."""
    print(text, file=sys.stderr)
    if getattr(args, "output", "text") == "json":
        document = {
            "format_version": 1,
            "exit_code": EXIT_ERROR,
            "error": text,
            "findings": [finding.as_dict() for finding in findings],
            "services": [],
        }
        print(json.dumps(document, indent=2))


def _validate(args: argparse.Namespace) -> int:
    args.file = args.file or args.file_option or DEFAULT_FILE
    try:
        checked = check_desired(args.file)
    except DesiredStateError as error:  # the same report as a loaded file's, on the same stream
        if args.output == "json":
            print(json.dumps({"valid": False, "findings": [f.as_dict() for f in error.findings]}, indent=2))
        else:
            for finding in error.findings:
                print(finding.describe())
            print(f"{args.file}: {len(error.findings)} error(s); not loaded")
        return EXIT_ERROR
    if args.output == "json":
        document = {"valid": not checked.has_errors, "findings": [f.as_dict() for f in checked.findings]}
        print(json.dumps(document, indent=2))
    else:
        for finding in checked.findings:
            print(finding.describe())
        errors = sum(f.severity is Severity.ERROR for f in checked.findings)
        verdict = f"{errors} error(s)" if errors else "valid"
        counts = f"{len(checked.state.services)} service(s), {len(checked.findings)} finding(s)"
        print(f"{args.file}: {verdict} ({counts})")
    return EXIT_ERROR if checked.has_errors else 0


def _checked(path: str) -> CheckedDesired:
    """The desired state, with its policy errors and warnings printed on stderr."""
    checked = check_desired(path)
    for finding in checked.findings:
        if finding.severity is not Severity.NOTE:
            print(finding.describe(), file=sys.stderr)
    return checked


def _gateway() -> CloudRunServices:
    from controller.cloudrun import CloudRunServices, services_client

    return CloudRunServices(services_client())


def _plan(args: argparse.Namespace) -> int:
    return _pass(args, dry_run=True)


def _apply(args: argparse.Namespace) -> int:
    return _pass(args, dry_run=False)


def _pass(args: argparse.Namespace, *, dry_run: bool) -> int:
    """One reconcile pass; `plan` is the same pass with the write switched off."""
    from controller.reconcile import reconcile
    from controller.render import outcomes_text, plan_json, plan_text

    checked = _checked(args.file)
    gateway = _gateway()
    try:
        result = reconcile(
            checked.state,
            gateway,
            dry_run=dry_run,
            blocked=checked.blocked_reasons(),
            server_dry_run=getattr(args, "server_dry_run", False),
            decisions=_decisions(checked),
        )
    finally:
        gateway.close()
    code = _pass_exit_code(result, dry_run=dry_run)
    if args.output == "json":
        server_checked = not dry_run or getattr(args, "server_dry_run", False)
        print(plan_json(result.plan, checked.findings, result if server_checked else None, code))
    else:
        print(plan_text(result.plan, color=sys.stdout.isatty()))
        if not dry_run or getattr(args, "server_dry_run", False):
            print(f"\n{outcomes_text(result)}")
    return code


def _decisions(checked: CheckedDesired) -> dict[ServiceKey, Any]:
    """The escalation verdicts on the signals of the last two minutes' windows, for `plan` and `apply`."""
    if not any(spec.escalation for spec in checked.state.services):
        return {}
    from datetime import UTC, datetime, timedelta

    from controller.runner import read_decisions
    from controller.signals import SignalReader, signal_clients

    reader = SignalReader(*signal_clients())
    try:
        decisions, _ = read_decisions(checked.state, reader, datetime.now(UTC) - timedelta(minutes=2))
    finally:
        reader.close()
    return dict(decisions)


def _pass_exit_code(result: PassResult, *, dry_run: bool) -> int:
    """plan: 0 in sync, 2 drift, 1 error or a refused server dry run; apply: 1 on any failure, else 0."""
    if dry_run:
        rejected = any(outcome.result is ApplyResult.FAILED for outcome in result.outcomes)
        return EXIT_ERROR if rejected else result.plan.exit_code
    return EXIT_ERROR if result.failed else 0


def _export(args: argparse.Namespace) -> int:
    from controller.export import export_document

    keys = list(dict.fromkeys(_service_key(name, args.project, args.region) for name in args.services))
    if args.out and os.path.exists(args.out) and not args.force:
        raise PermanentError(f"{args.out} exists: pass --force to overwrite it")
    gateway = _gateway()
    try:
        observed = [gateway.get_service(key).observed for key in keys]
    finally:
        gateway.close()
    text = export_document(observed)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            out.write(text)
        print(f"wrote {args.out} ({len(observed)} service(s))")
    else:
        print(text, end="")
    return 0


def _service_key(name: str, project: str | None, region: str | None) -> ServiceKey:
    parts = name.split("/")
    if len(parts) == 6 and parts[0::2] == ["projects", "locations", "services"]:
        return ServiceKey(project=parts[1], region=parts[3], name=parts[5])
    if "/" in name or not project or not region:
        raise PermanentError(
            f"{name!r}: give projects/P/locations/R/services/S, or a name with --project and --region"
        )
    return ServiceKey(project=project, region=region, name=name)


def _schema(args: argparse.Namespace) -> int:
    from desired.jsonschema import json_schema
    from desired.reference import markdown_reference

    text = markdown_reference() if args.markdown else json_schema()
    if args.write:
        with open(args.write, "w", encoding="utf-8") as out:
            out.write(text)
        print(f"wrote {args.write}")
    else:
        print(text, end="")
    return 0


def _deescalate(args: argparse.Namespace) -> int:
    """The one way back from Cloud SQL: the declared SQLite URL again, the Cloud SQL volume the escalation
    added removed, the latch cleared; in one update guarded by the etag."""
    from datetime import UTC, datetime

    from controller.diff import FieldChange, ManagedField
    from controller.escalation import deescalation_changes, is_latched
    from controller.model import APPLIED_ANNOTATION
    from controller.plan import applied_record
    from controller.show import format_value

    checked = _checked(args.file)
    spec = next((s for s in checked.state.services if s.name == args.service), None)
    if spec is None:
        names = ", ".join(s.name for s in checked.state.services)
        raise PermanentError(f"{args.service!r} is not declared in {args.file} (declared: {names})")
    gateway = _gateway()
    try:
        live = gateway.get_service(spec.key)
        if not is_latched(live.observed):
            print(f"{spec.name}: not escalated (no latch annotation): nothing to do")
            return 0
        try:
            changes = deescalation_changes(spec, live.observed, datetime.now(UTC))
        except ValueError as error:
            raise PermanentError(str(error)) from None
        verb = "would change" if args.dry_run else "changes"
        print(f"deescalate {spec.key}: {verb}")
        width = max(len(change.path) for change in changes)
        for change in changes:
            old, new = format_value(change, change.old), format_value(change, change.new)
            print(f"    {change.path:<{width}}  {old} → {new}")
        if args.dry_run:
            print("(dry run: nothing written)")
            return 0
        record = FieldChange(
            ManagedField.ANNOTATION, None, applied_record(spec, live.observed), key=APPLIED_ANNOTATION
        )
        updated = gateway.apply(live, (*changes, record))
    finally:
        gateway.close()
    revision = updated.observed.latest_ready_revision
    print(f"deescalated: serving revision {revision}; back on the desired file's SQLite URL")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from controller.demo import run_demo

    return run_demo(args.file)


def _run(args: argparse.Namespace) -> int:
    from controller.serve import serve

    return serve(args)


def _emulator(args: argparse.Namespace) -> int:
    from controller.emulator_cli import standalone_emulator

    return standalone_emulator(args)
