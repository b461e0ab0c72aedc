"""A local stand-in for the Cloud Run Admin API v2 and Cloud Monitoring's ListTimeSeries, on loopback gRPC.

The unmodified `google-cloud-run` client talks to it through an insecure channel; tests and the demo
use it in-process, `cloudrun-reconciler emulator` runs it standalone. It imports nothing from
`controller/`. What it emulates, and what it does not, is in `emulator/FIDELITY.md`.
"""

from emulator.monitoring import MetricStore
from emulator.rules import ApiError
from emulator.seed import SeedError, load_seed_file, load_seed_text, service_from_dict
from emulator.server import Emulator
from emulator.store import ServiceStore

__all__ = [
    "ApiError",
    "Emulator",
    "MetricStore",
    "SeedError",
    "ServiceStore",
    "load_seed_file",
    "load_seed_text",
    "service_from_dict",
]
