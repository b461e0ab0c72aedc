"""The soak's fleet: the services as found, the desired file as it is edited, and what others do to them.

Owns the shapes the soak works with, all drawn from one seeded generator so a run can be repeated:
  - services as found (Cloud Run's defaults, a non-WAL SQLite URL, an image, a `LOG_LEVEL` and a `team`
    label that belong to others), as v2 JSON for the emulator's control endpoint;
  - the desired file, valid (its edits change a timeout, a maximum, a label, a token) or invalid in the
    ways people get it wrong (an unknown key, a value out of range, broken YAML, a duplicate key, a
    minimum above the maximum, a journal mode that policy blocks). Every invalid file also carries a
    canary that no valid file has (a timeout of 1234 s, a `canary` label, a `canary=` URL parameter), so
    that applying any part of it shows in the emulator's history;
  - out-of-band edits: a `gcloud run deploy` with a new image that resets the owned timeout and the
    database URL, a console edit of the maximum, a foreign env var, a rotated callback password;
  - the secrets the file and the edits hold, which no log line may show.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CANARY_TIMEOUT",
    "LATCH",
    "PROJECT",
    "REGION",
    "STORAGE_METRIC",
    "Fleet",
    "ServiceState",
]

PROJECT, REGION = "soak-project", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
STORAGE_METRIC = "logging.googleapis.com/user/sqlite_storage_errors"
LATCH = "cloudrun-reconciler.dev/escalated"
CANARY_TIMEOUT = "1234s"
SQLITE_URL = "sqlite:///data/app.db"
OWNED_ENV = ("DATABASE_URL", "API_TOKEN", "CALLBACK_URL")
OWNED_LABELS = ("tier",)
INVALID_KINDS = ("unknown-key", "out-of-range", "not-yaml", "duplicate-key", "min-above-max", "blocked")


@dataclass
class ServiceState:
    """What the desired file says of one service, as the soak last wrote it validly."""

    name: str
    timeout: str = "3600s"
    max_instances: int = 3
    tier: str = "gold"
    token: str = ""
    callback_password: str = ""
    escalates: bool = False
    cloud_sql_password: str = ""  # a literal Cloud SQL URL with a password; "" uses a secret reference

    @property
    def resource(self) -> str:
        return f"{PARENT}/services/{self.name}"


@dataclass
class Fleet:
    """`size` services; every third declares an escalation to Cloud SQL on storage errors."""

    size: int
    rng: random.Random
    services: list[ServiceState] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)
    images: int = 0
    foreign: int = 0

    def __post_init__(self) -> None:
        for index in range(self.size):
            state = ServiceState(
                name=f"svc-{index:02d}",
                token=self.secret("tok"),
                callback_password=self.secret("cb"),
                escalates=index % 3 == 0,
            )
            if state.escalates and index % 6 == 0:
                state.cloud_sql_password = self.secret("sql")
            self.services.append(state)

    def secret(self, kind: str) -> str:
        value = f"{kind}-{self.rng.getrandbits(48):012x}"
        self.secrets.add(value)
        return value

    @property
    def escalating(self) -> list[ServiceState]:
        return [state for state in self.services if state.escalates]

    # ---- as found --------------------------------------------------------------------------------

    def seeds(self) -> dict[str, Any]:
        """Every service as deployed before the controller: the body of one `POST /v1/services`."""
        return {"services": [self._seed(state) for state in self.services]}

    def _seed(self, state: ServiceState) -> dict[str, Any]:
        return {
            "name": state.resource,
            "labels": {"team": "payments"},
            "client": "gcloud",
            "template": {
                "timeout": "300s",
                "containers": [
                    {
                        "name": "app",
                        "image": f"us-docker.pkg.dev/{PROJECT}/apps/{state.name}:1",
                        "resources": {"limits": {"cpu": "1", "memory": "512Mi"}, "cpuIdle": True},
                        "env": [
                            {"name": "DATABASE_URL", "value": SQLITE_URL},
                            {"name": "LOG_LEVEL", "value": "info"},
                        ],
                    }
                ],
            },
        }

    # ---- the desired file ------------------------------------------------------------------------

    def desired(self) -> str:
        """The desired file as the soak's state says."""
        return self._document([self._service(state) for state in self.services])

    def edit_valid(self) -> str:
        """Change one thing of one service, as a person's commit would; the new file."""
        state = self.rng.choice(self.services)
        kind = self.rng.choice(("timeout", "max", "tier", "token"))
        if kind == "timeout":
            state.timeout = self.rng.choice([t for t in ("1800s", "2700s", "3600s") if t != state.timeout])
        elif kind == "max":
            state.max_instances = self.rng.choice([m for m in (2, 3, 4) if m != state.max_instances])
        elif kind == "tier":
            state.tier = "silver" if state.tier == "gold" else "gold"
        else:
            state.token = self.secret("tok")
        return self.desired()

    def edit_invalid(self, kind: str) -> str:
        """The file with a canary on one service and a defect of `kind` (the state is not changed)."""
        target, other = self.rng.sample(self.services, 2)
        blocks = []
        for state in self.services:
            lines = self._service(state)
            if state is target:
                lines = _replace(lines, "    timeout:", f"    timeout: {CANARY_TIMEOUT}")
                lines = _replace(lines, "    labels:", f"    labels: {{tier: {state.tier}, canary: {kind}}}")
                if kind == "blocked":  # a valid file; policy blocks this service: CR101
                    url = json.dumps(f"{SQLITE_URL}?_journal_mode=DELETE&canary=1")
                    lines = _replace(lines, "      DATABASE_URL:", f"      DATABASE_URL: {url}")
            if state is other:
                lines = _defect(lines, kind)
            blocks.append(lines)
        return self._document(blocks)

    def _document(self, blocks: list[list[str]]) -> str:
        head = [
            "# yaml-language-server: $schema=./desired-state.schema.json",
            "apiVersion: cloudrun-reconciler/v1alpha1",
            f"defaults: {{project: {PROJECT}, region: {REGION}}}",
            "services:",
        ]
        return "\n".join([*head, *(line for block in blocks for line in block)]) + "\n"

    def _service(self, state: ServiceState) -> list[str]:
        callback = f"https://agent:{state.callback_password}@hooks.example.com/done"
        lines = [
            f"  - name: {state.name}",
            f"    timeout: {state.timeout}",
            f"    scaling: {{level: service, minInstances: 1, maxInstances: {state.max_instances}}}",
            "    cpuAlwaysAllocated: true",
            "    env:",
            f"      DATABASE_URL: {json.dumps(SQLITE_URL + '?_journal_mode=WAL&_busy_timeout=5000')}",
            f"      API_TOKEN: {json.dumps(state.token)}",
            f"      CALLBACK_URL: {json.dumps(callback)}",
            f"    labels: {{tier: {state.tier}}}",
            "    database: {env: DATABASE_URL, dialect: mattn}",
        ]
        if state.escalates:
            instance = f"{PROJECT}:{REGION}:{state.name}-sql"
            url: Any = {"secret": f"{state.name}-cloudsql-url"}
            if state.cloud_sql_password:
                url = f"postgresql://app:{state.cloud_sql_password}@/app?host=/cloudsql/{instance}"
            lines += [
                "    escalation:",
                "      window: 60s",
                "      consecutiveWindows: 1",
                "      minRequests: 5",
                f"      storageErrors: {{metric: {STORAGE_METRIC}, maxCount: 0}}",
                f"      cloudSql: {{instance: {instance}, databaseUrl: {json.dumps(url)}}}",
            ]
        return lines

    # ---- out-of-band edits -----------------------------------------------------------------------

    def out_of_band(self, live: dict[str, Any], kind: str | None = None) -> tuple[str, dict[str, Any]]:
        """An edit someone else makes to the live service `live` (v2 JSON), of `kind` or one drawn: its
        kind and the body of `POST /v1/edit`. Lists are sent whole, as the endpoint replaces them."""
        kind = kind or self.rng.choice(("deploy", "deploy", "console", "foreign-env", "callback"))
        template = copy.deepcopy(live.get("template", {}))
        containers = template.get("containers", [])
        body: dict[str, Any] = {"name": live["name"]}
        if kind == "deploy":  # `gcloud run deploy --image …` without --timeout or the URL's WAL
            self.images += 1
            name = live["name"].rsplit("/", 1)[-1]
            containers[0]["image"] = f"us-docker.pkg.dev/{PROJECT}/apps/{name}:deploy-{self.images}"
            _set_env(containers[0], "DATABASE_URL", SQLITE_URL)
            service = {"template": {"timeout": "300s", "containers": containers}}
            body.update(principal="user:deployer@example.com", client="gcloud", service=service)
        elif kind == "console":
            scaling = {**live.get("scaling", {}), "maxInstanceCount": self.rng.randint(5, 20)}
            body.update(principal="user:console@example.com", client="cloud-console")
            body["service"] = {"scaling": scaling}
        elif kind == "foreign-env":
            self.foreign += 1
            _set_env(containers[0], f"FOREIGN_{self.foreign}", f"value-{self.foreign}")
            service = {"template": {"containers": containers}}
            body.update(principal="user:ops@example.com", client="gcloud", service=service)
        else:  # someone pastes another password into an owned, secret-bearing value
            password = self.secret("oob")
            _set_env(containers[0], "CALLBACK_URL", f"https://agent:{password}@hooks.example.com/done")
            service = {"template": {"containers": containers}}
            body.update(principal="user:ops@example.com", client="gcloud", service=service)
        return kind, body


def _replace(lines: list[str], prefix: str, line: str) -> list[str]:
    return [line if text.startswith(prefix) else text for text in lines]


def _defect(lines: list[str], kind: str) -> list[str]:
    """One service's lines made invalid in the way `kind` names."""
    if kind == "unknown-key":
        return [*lines, "    bogus: 1"]
    if kind == "out-of-range":
        return _replace(lines, "    timeout:", "    timeout: 4000s")
    if kind == "not-yaml":
        return [*lines, "    labels: {tier: [unclosed"]
    if kind == "duplicate-key":
        return [*lines, "    timeout: 1800s"]
    if kind == "min-above-max":
        return _replace(
            lines, "    scaling:", "    scaling: {level: service, minInstances: 5, maxInstances: 2}"
        )
    return lines  # "blocked": the canary service itself is what policy refuses


def _set_env(container: dict[str, Any], name: str, value: str) -> None:
    env = container.setdefault("env", [])
    for variable in env:
        if variable.get("name") == name:
            variable.clear()
            variable.update(name=name, value=value)
            return
    env.append({"name": name, "value": value})
