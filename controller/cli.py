"""The `cloudrun-reconciler` command line: validate, plan, apply, demo, emulator.

Owns arguments, exit codes and where output goes (results on stdout, errors on stderr). Exit codes follow
Terraform's `-detailed-exitcode` for `plan`: 0 in sync, 2 drift, 1 error; every other command exits 0 on
success and 1 on any error. Nothing here decides what to change; it calls the composer and prints.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from controller import __version__
from controller.errors import ReconcilerError
from controller.logs import configure_logging
from controller.plan import EXIT_ERROR
from desired import DesiredState, DesiredStateError, load_desired

__all__ = ["main"]

DEFAULT_FILE = "desired-state.yaml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cloudrun-reconciler",
        description="Keep Google Cloud Run services as desired-state.yaml declares them.",
        epilog="Set CLOUD_RUN_EMULATOR_HOST=host:port to talk to a local emulator instead of Google Cloud.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check a desired-state file; exit 1 on any error")
    validate.add_argument("file", nargs="?", default=DEFAULT_FILE)

    for name, text in (
        ("plan", "show what differs from the desired state; exit 0 in sync, 2 drift, 1 error"),
        ("apply", "plan, then write the declared fields of every drifted service"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("-f", "--file", default=DEFAULT_FILE)
        command.add_argument("-o", "--output", choices=["text", "json"], default="text")

    demo = commands.add_parser(
        "demo", help="plan and apply the reference service against an in-process emulator"
    )
    demo.add_argument("-f", "--file", default=DEFAULT_FILE)

    emulator = commands.add_parser("emulator", help="run the local Cloud Run API emulator")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8085)
    emulator.add_argument(
        "--seed",
        action="append",
        default=[],
        metavar="FILE",
        help="v2 Service JSON/YAML to start with (repeatable)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_level)
    handler = {"validate": _validate, "plan": _plan, "apply": _apply, "demo": _demo, "emulator": _emulator}
    try:
        return handler[args.command](args)
    except DesiredStateError as error:
        print(error, file=sys.stderr)
        return EXIT_ERROR
    except ReconcilerError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR


def _validate(args: argparse.Namespace) -> int:
    desired = load_desired(args.file)
    print(f"{args.file}: valid ({len(desired.services)} service(s))")
    return 0


def _gateway() -> object:
    from controller.cloudrun import CloudRunServices, services_client

    return CloudRunServices(services_client())


def _plan(args: argparse.Namespace) -> int:
    from controller.reconcile import reconcile
    from controller.render import plan_json, plan_text

    desired = load_desired(args.file)
    result = reconcile(desired, _gateway(), dry_run=True)  # type: ignore[arg-type]
    print(
        plan_json(result.plan) if args.output == "json" else plan_text(result.plan, color=sys.stdout.isatty())
    )
    return result.plan.exit_code


def _apply(args: argparse.Namespace) -> int:
    from controller.reconcile import reconcile
    from controller.render import outcomes_text, plan_json, plan_text

    desired: DesiredState = load_desired(args.file)
    result = reconcile(desired, _gateway(), dry_run=False)  # type: ignore[arg-type]
    if args.output == "json":
        print(plan_json(result.plan))
    else:
        print(plan_text(result.plan, color=sys.stdout.isatty()))
        print()
        print(outcomes_text(result))
    return EXIT_ERROR if result.failed else 0


def _demo(args: argparse.Namespace) -> int:
    from controller.demo import run_demo

    return run_demo(args.file)


def _emulator(args: argparse.Namespace) -> int:
    from emulator import Emulator, SeedError, load_seed_file

    try:
        services = [service for path in args.seed for service in load_seed_file(path)]
    except SeedError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    server = Emulator(host=args.host, port=args.port)
    server.seed(services)
    server.start()

    def stop(signum: int, _: FrameType | None) -> None:
        server.stop(grace=1.0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"Cloud Run API emulator listening on {server.address} ({len(services)} service(s) seeded)")
    print(f"export CLOUD_RUN_EMULATOR_HOST={server.address}", flush=True)
    server.wait()
    return 0
