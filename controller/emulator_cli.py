"""`cloudrun-reconciler emulator` as a process: the local Cloud Run, Monitoring and Logging APIs on
loopback, seeded from files, with the control endpoint, until SIGTERM.

Owns reading the seed files, binding the ports, and printing the address the way Google's emulators do
(`export CLOUD_RUN_EMULATOR_HOST=…`).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from types import FrameType

from controller.plan import EXIT_ERROR

__all__ = ["standalone_emulator"]


def standalone_emulator(args: argparse.Namespace) -> int:
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # its own line for a busy port; ours says it better
    from emulator import ApiError, Emulator, SeedError, load_seed_file
    from emulator.admin import AdminServer

    try:
        services = [
            service
            for path in args.seed
            for service in load_seed_file(path, project=args.seed_project, location=args.seed_region)
        ]
    except SeedError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    try:
        server = Emulator(host=args.host, port=args.port)
        server.seed(services)
    except (OSError, ApiError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    try:
        admin = None if args.admin_port is None else AdminServer(server, args.admin_port).start()
    except OSError as error:
        print(f"error: cannot serve the control endpoint: {error}", file=sys.stderr)
        return EXIT_ERROR
    server.start()

    def stop(signum: int, _: FrameType | None) -> None:
        if admin is not None:
            threading.Thread(target=admin.stop, daemon=True).start()
        server.stop(grace=1.0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    seeded = len(server.store.list_names())
    print(f"Cloud Run API emulator listening on {server.address} ({seeded} service(s) seeded)")
    if admin is not None:
        print(f"control endpoint on http://{admin.address}/v1/ (seed, edit, faults, points, settings, calls)")
    print(f"export CLOUD_RUN_EMULATOR_HOST={server.address}", flush=True)
    server.wait()
    return 0
