"""What the controller knows of a live service: plain frozen values, never protobufs.

Owns `ObservedService`, the part of a Cloud Run service the diff looks at, already read with the
server's defaults applied (an absent timeout is 300 s, an absent revision maximum is 100), so that the
pure core compares meanings and never raw API shapes. The adapter in `controller.cloudrun` builds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from desired import EnvValue, ServiceKey

__all__ = [
    "APPLIED_ANNOTATION",
    "CLIENT_NAME",
    "DEFAULT_REVISION_MAX_INSTANCES",
    "DEFAULT_TIMEOUT_SECONDS",
    "CloudSqlVolume",
    "GcsVolume",
    "LiveService",
    "ObservedContainer",
    "ObservedService",
    "OtherVolume",
]

CLIENT_NAME = "cloudrun-reconciler"  # what this controller writes into a service's `client`
# The annotation where the controller records what it last applied: a fingerprint per owned field, never
# a value (values may be secrets). Like kubectl's last-applied-configuration, it tells a change made in the
# desired file from one made on the service by someone else.
APPLIED_ANNOTATION = "cloudrun-reconciler.dev/applied"
DEFAULT_TIMEOUT_SECONDS = 300  # template.timeout when the service does not set one
DEFAULT_REVISION_MAX_INSTANCES = 100  # template.scaling.max_instance_count when unset


@dataclass(frozen=True)
class GcsVolume:
    """A Cloud Storage volume by meaning: mount options are a set, whatever order they were written in."""

    bucket: str
    read_only: bool = False
    mount_options: frozenset[str] = frozenset()

    def __str__(self) -> str:
        options = f", options {','.join(sorted(self.mount_options))}" if self.mount_options else ""
        return f"gs://{self.bucket} ({'read-only' if self.read_only else 'read-write'}{options})"


@dataclass(frozen=True)
class CloudSqlVolume:
    """A Cloud SQL volume by meaning: its instances are a set."""

    instances: frozenset[str]

    def __str__(self) -> str:
        return f"Cloud SQL {', '.join(sorted(self.instances))}"


@dataclass(frozen=True)
class OtherVolume:
    """A volume neither Cloud Storage nor Cloud SQL (a secret, an in-memory dir): never rewritten here."""

    kind: str

    def __str__(self) -> str:
        return f"a {self.kind} volume"


@dataclass(frozen=True)
class ObservedContainer:
    """One container of the live revision template."""

    index: int
    name: str
    image: str
    serves_ingress: bool
    cpu_idle: bool  # True (throttled) unless resources say otherwise
    env: tuple[tuple[str, EnvValue], ...] = ()
    startup_cpu_boost: bool = False
    volume_mounts: tuple[tuple[str, str], ...] = ()  # (volume name, mount path)

    @property
    def label(self) -> str:
        """How the plan names this container: its name, or its position when it has none."""
        return self.name or f"#{self.index}"

    def env_value(self, name: str) -> EnvValue | None:
        """The value the container sees: when a name repeats, the last one wins, as in the runtime."""
        found = None
        for key, value in self.env:
            if key == name:
                found = value
        return found

    def mount_path(self, volume: str) -> str | None:
        return next((path for name, path in self.volume_mounts if name == volume), None)


@dataclass(frozen=True)
class ObservedService:
    """A live Cloud Run service as far as the controller manages it, plus who last wrote it."""

    key: ServiceKey
    etag: str
    generation: int
    timeout_seconds: float
    service_min_instances: int  # 0: no service-level minimum
    service_max_instances: int | None  # None: no service-level maximum
    revision_min_instances: int
    revision_max_instances: int
    containers: tuple[ObservedContainer, ...]
    execution_environment: str = ""  # "gen1", "gen2", or "" when Cloud Run chooses
    volumes: tuple[tuple[str, GcsVolume | CloudSqlVolume | OtherVolume], ...] = ()
    latest_ready_revision: str = ""
    failure: str = ""  # Cloud Run's message when its Ready condition failed (a revision that did not start)
    traffic: tuple[tuple[str, int], ...] = ()  # (revision, percent) as Cloud Run reports it is serving
    last_modifier: str = ""
    client: str = ""
    labels: tuple[tuple[str, str], ...] = field(default=())
    annotations: tuple[tuple[str, str], ...] = field(default=())
    applied: tuple[tuple[str, str], ...] = ()  # (field path, fingerprint) as this controller last wrote them

    def volume(self, name: str) -> GcsVolume | CloudSqlVolume | OtherVolume | None:
        return next((volume for key, volume in self.volumes if key == name), None)

    def annotation(self, name: str) -> str | None:
        """The annotation's value (the last one, should a name repeat), without building a dict."""
        return next((value for key, value in reversed(self.annotations) if key == name), None)

    @property
    def latest_share(self) -> int:
        """The percentage of traffic the latest ready revision serves (100 when traffic is not reported)."""
        if not self.traffic:
            return 100
        return sum(percent for revision, percent in self.traffic if revision == self.latest_ready_revision)

    @property
    def pinned_to(self) -> tuple[str, ...]:
        """The other revisions that serve traffic."""
        return tuple(r for r, percent in self.traffic if percent and r != self.latest_ready_revision)


@dataclass(frozen=True)
class LiveService:
    """What an adapter read: the observed view for the core, and the raw message it writes back from."""

    observed: ObservedService
    raw: Any  # opaque outside the adapter that made it
