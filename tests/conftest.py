"""Shared fixtures: an in-process emulator per test, the real Cloud Run client pointed at it."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import structlog
from google.cloud import run_v2
from hypothesis import settings

from controller.cloudrun import CloudRunServices, services_client
from controller.model import APPLIED_ANNOTATION
from emulator import Emulator, load_seed_file

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = "projects/demo-project/locations/us-central1/services/cagent-api"


OUTPUT_ONLY = (
    "etag",
    "generation",
    "observed_generation",
    "update_time",
    "latest_ready_revision",
    "latest_created_revision",
    "traffic_statuses",
    "terminal_condition",
    "client",
    "client_version",
    "last_modifier",
)


def without_output_only(service: run_v2.Service) -> Any:
    """A copy of the service's protobuf with the fields Cloud Run writes itself cleared."""
    pb = copy.deepcopy(run_v2.Service.pb(service))
    for name in OUTPUT_ONLY:
        pb.ClearField(name)
    pb.annotations.pop(APPLIED_ANNOTATION, None)  # the controller's own record of what it applied
    return pb


def as_found_services() -> list[Any]:
    """cagent-api as the runbook found it (the demo's seed)."""
    seed = resources.files("emulator").joinpath("seeds/cagent-api-as-found.yaml")
    with resources.as_file(seed) as path:
        return load_seed_file(path)


@pytest.fixture(autouse=True)
def _logging_reset() -> Iterator[None]:
    """A test that runs the CLI in-process configures structlog onto its captured stream; undo that."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator() as server:
        yield server


@pytest.fixture
def client(emulator: Emulator) -> Iterator[run_v2.ServicesClient]:
    """The unmodified `ServicesClient`, over an insecure channel to the emulator."""
    real = services_client(emulator.address)
    yield real
    real.transport.close()


@pytest.fixture
def gateway(client: run_v2.ServicesClient) -> CloudRunServices:
    return CloudRunServices(client, operation_timeout=10.0)


@pytest.fixture
def reference(emulator: Emulator) -> Emulator:
    """The emulator seeded with the reference service as found."""
    emulator.seed(as_found_services())
    return emulator


# CI runs the property tests on a fixed seed so a red build always means a change, not a luckier draw;
# locally every run explores new examples.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# The fuzz tests run a fixed number of derandomized examples wherever they run, CI or not, so the suite is
# reproducible; FUZZ_EXAMPLES=N explores N fresh random examples per property instead (a longer run).
_FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=_FUZZ_EXAMPLES or 300, deadline=None, derandomize=not _FUZZ_EXAMPLES)
