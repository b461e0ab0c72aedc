"""What Cloud Run fills in and what it refuses: server defaults and request validation, on raw protobufs.

Owns the emulator's fidelity to the API's documented rules (see `emulator/FIDELITY.md` for sources): the
defaults the server writes when a request leaves a field out, and the field violations it answers with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.cloud import run_v2
from google.protobuf import any_pb2
from google.rpc import error_details_pb2

__all__ = ["ApiError", "fill_defaults", "validate"]

MAX_TIMEOUT_SECONDS = 3600
_LAUNCH_STAGE = run_v2.Service.pb().DESCRIPTOR.fields_by_name["launch_stage"].enum_type
_RESERVED = ("run.googleapis.com", "cloud.googleapis.com", "serving.knative.dev", "autoscaling.knative.dev")
_FORBIDDEN_MOUNTS = ("/dev", "/proc", "/sys")
_CPU = re.compile(r"([0-9]+(?:\.[0-9]+)?)(m?)")


@dataclass
class ApiError(Exception):
    """An error the API answers with: a gRPC status code, a message, optional field violations."""

    code: grpc.StatusCode
    message: str
    violations: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        violations = "; ".join(f"{path}: {text}" for path, text in self.violations)
        return f"{self.code.name}: {self.message}" + (f" ({violations})" if violations else "")

    def details(self) -> list[any_pb2.Any]:
        if not self.violations:
            return []
        request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=path, description=text)
                for path, text in self.violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(request)
        return [packed]


def fill_defaults(service: Any) -> None:
    """Fields Cloud Run fills in when a request leaves them out (Terraform's `default_from_api` list)."""
    if not service.launch_stage:
        service.launch_stage = _LAUNCH_STAGE.values_by_name["GA"].number
    if not service.ingress:
        service.ingress = run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL
    template = service.template
    if not template.HasField("timeout"):
        template.timeout.FromSeconds(300)
    if not template.scaling.max_instance_count:
        template.scaling.max_instance_count = 100
    if not template.max_instance_request_concurrency:
        template.max_instance_request_concurrency = 80
    for container in template.containers:
        if not container.HasField("resources"):
            container.resources.cpu_idle = True
        limits = container.resources.limits
        limits.setdefault("cpu", "1000m")
        limits.setdefault("memory", "512Mi")
    if len(template.containers) == 1 and not template.containers[0].ports:
        template.containers[0].ports.add(name="http1", container_port=8080)
    if not service.traffic:
        service.traffic.add(
            type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST, percent=100
        )


def validate(service: Any) -> None:
    """Raise INVALID_ARGUMENT with every field violation Cloud Run would report for `service`."""
    violations = [*_timeout(service), *_scaling(service), *_metadata(service), *_containers(service)]
    if violations:
        raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "The request has errors", violations)


def _timeout(service: Any) -> list[tuple[str, str]]:
    timeout = service.template.timeout.ToTimedelta().total_seconds()
    if 0 < timeout <= MAX_TIMEOUT_SECONDS:
        return []
    return [
        ("template.timeout", f"Timeout must be between 1 and {MAX_TIMEOUT_SECONDS} seconds, got {timeout:g}.")
    ]


def _scaling(service: Any) -> list[tuple[str, str]]:
    return [
        (
            f"{prefix}.min_instance_count",
            "min_instance_count must be less than or equal to max_instance_count.",
        )
        for prefix, scaling in (("scaling", service.scaling), ("template.scaling", service.template.scaling))
        if scaling.max_instance_count and scaling.min_instance_count > scaling.max_instance_count
    ]


def _metadata(service: Any) -> list[tuple[str, str]]:
    found = []
    for section in ("labels", "annotations"):
        for key in getattr(service, section):
            prefix = key.split("/", 1)[0] if "/" in key else ""
            if any(prefix == ns or prefix.endswith("." + ns) for ns in _RESERVED):
                found.append(
                    (
                        f"{section}[{key}]",
                        f"{section[:-1].capitalize()} keys in the {prefix} namespace "
                        "are reserved and cannot be set in the v2 API.",
                    )
                )
    return found


def _containers(service: Any) -> list[tuple[str, str]]:
    found = []
    for index, container in enumerate(service.template.containers):
        where = f"template.containers[{index}]"
        paths = [mount.mount_path for mount in container.volume_mounts]
        for path in sorted(set(paths)):
            if paths.count(path) > 1:
                found.append(
                    (f"{where}.volume_mounts", f"mount path {path} is used by more than one volume mount.")
                )
            if any(path == root or path.startswith(root + "/") for root in _FORBIDDEN_MOUNTS):
                found.append(
                    (
                        f"{where}.volume_mounts",
                        f"mount path {path} is reserved: not under /dev, /proc or /sys.",
                    )
                )
        cpu = _cpu(container.resources.limits.get("cpu", "1"))
        if not container.resources.cpu_idle and cpu is not None and cpu < 1:
            found.append(
                (
                    f"{where}.resources.cpu_idle",
                    "CPU always allocated (cpu_idle=false) requires at least 1 CPU; below that, "
                    "request-based billing is required.",
                )
            )
    return found


def _cpu(text: str) -> float | None:
    match = _CPU.fullmatch(text.strip())
    if match is None:
        return None
    value = float(match[1])
    return value / 1000 if match[2] else value
