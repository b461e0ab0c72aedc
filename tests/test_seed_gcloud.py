"""The gcloud command-line seed shape on small inline command lines: what each flag sets in v2, what is
refused and how, and that the flag tables agree with the installed gcloud.

Pure functions (the loader returns v2 protobufs), so no emulator. Where a row says gcloud itself takes or
refuses the command line while parsing it, the last tests run it through the real gcloud, offline and
without an account (tests/test_gcloud_usage.py), and skip without one.
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from google.protobuf import json_format

from emulator import SeedError, load_seed_text
from emulator.seed_gcloud_flags import (
    DICT_FLAGS,
    HINTS,
    LIST_FLAGS,
    NOT_CONVERTED,
    PRERELEASE_FLAGS,
    REPEATED_FLAGS,
    SWITCHES,
    VALUE_FLAGS,
)
from tests.test_gcloud_usage import Command, completion_tree, gcloud_or_skip, problem

BASE = "run deploy svc-a --image=us-docker.pkg.dev/demo-project/repo-a/app-a:v1"


def _load(flags: str, track: str = "") -> dict[str, Any]:
    """The v2 JSON of `gcloud [track] run deploy svc-a --image=... FLAGS`, in project p1, region r1."""
    text = f"gcloud {track} {BASE} {flags}"
    (service,) = load_seed_text(text, "deploy.sh", project="p1", location="r1")
    found: dict[str, Any] = json_format.MessageToDict(service)
    return found


def _refused(flags: str, track: str = "") -> list[str]:
    """The problems of a refused command line, each `argv[i]: reason`."""
    with pytest.raises(SeedError) as error:
        _load(flags, track)
    return [line.removeprefix("deploy.sh: ") for line in str(error.value).splitlines()]


def _container(service: dict[str, Any]) -> dict[str, Any]:
    (container,) = service["template"]["containers"]
    assert isinstance(container, dict)
    return container


def _env(service: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(e["name"], e.get("value", e.get("valueSource"))) for e in _container(service).get("env", [])]


# The word index of the first flag after BASE: `gcloud run deploy svc-a --image=...` is argv[0..4].
FIRST = 5


def test_env_vars_take_gcloud_escaping_and_merge_across_repeats() -> None:
    assert _env(_load("'--set-env-vars=^:^LIST=a,b:URL=x=y' --set-env-vars=MORE=1")) == [
        ("LIST", "a,b"),
        ("URL", "x=y"),
        ("MORE", "1"),
    ]
    assert _env(_load("--update-env-vars=^;^A=1;B=2")) == [("A", "1"), ("B", "2")]


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (
            "--set-env-vars=A=1 --set-env-vars=A=1",
            f"argv[{FIRST + 1}]: --set-env-vars: 'A' cannot be specified",
        ),
        ("--set-env-vars=A=1 --update-env-vars=B=2", f"argv[{FIRST + 1}]: at most one of --set-env-vars"),
        ("--set-env-vars=A=1,,B=2", f"argv[{FIRST}]: 'A=1,,B=2' has an empty item"),
        ("--set-env-vars=A", f"argv[{FIRST}]: 'A' is not KEY=VALUE"),
        ("--set-env-vars=A=1,A=2", f"argv[{FIRST}]: A given twice with different values"),
    ],
    ids=["key-in-two-repeats", "set-and-update", "empty-item", "no-value", "key-twice-in-one"],
)
def test_env_vars_gcloud_refuses_or_a_seed_will_not_guess_are_refused(flags: str, says: str) -> None:
    (found,) = _refused(flags)
    assert found.startswith(says), found


def test_secrets_become_secret_manager_references_of_this_project_or_another() -> None:
    service = _load(
        "--update-secrets=DB_PASS=db-pass:3,API=projects/123/secrets/api/versions/2 "
        "--update-secrets=OTHER=projects/123/secrets/other"
    )
    assert _env(service) == [
        ("DB_PASS", {"secretKeyRef": {"secret": "db-pass", "version": "3"}}),
        ("API", {"secretKeyRef": {"secret": "projects/123/secrets/api", "version": "2"}}),
        ("OTHER", {"secretKeyRef": {"secret": "projects/123/secrets/other", "version": "latest"}}),
    ]


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        ("--update-secrets=DB=db-pass", "DB=db-pass: no secret version; use db-pass:latest"),
        ("--update-secrets=DB=a/b:1", "DB=a/b:1: expected SECRET:VERSION or projects/NUMBER/secrets/SECRET"),
        ("--update-secrets=DB=a:1:2", "DB=a:1:2: expected SECRET:VERSION"),
        ("--update-secrets=/etc/db/pass=db-pass:1", "--update-secrets /etc/db/pass: secret volumes are not"),
    ],
    ids=["no-version", "bad-name", "two-colons", "mount"],
)
def test_a_secret_reference_gcloud_would_not_take_is_refused(flags: str, says: str) -> None:
    (found,) = _refused(flags)
    assert found.startswith(f"argv[{FIRST}]: {says}"), found


def test_volumes_and_their_mounts_by_type() -> None:
    service = _load(
        "--add-volume=name=data,type=cloud-storage,bucket=bucket-a,readonly=true "
        "--add-volume=name=scratch,type=in-memory,size-limit=64Mi "
        "--add-volume=name=share,type=nfs,location=10.0.0.2:/exports/a "
        "--add-volume-mount=volume=data,mount-path=/mnt/data "
        "--add-volume-mount=volume=scratch,mount-path=/scratch"
    )
    assert service["template"]["volumes"] == [
        {"name": "data", "gcs": {"bucket": "bucket-a", "readOnly": True}},
        {"name": "scratch", "emptyDir": {"medium": "MEMORY", "sizeLimit": "64Mi"}},
        {"name": "share", "nfs": {"server": "10.0.0.2", "path": "/exports/a"}},
    ]
    assert _container(service)["volumeMounts"] == [
        {"name": "data", "mountPath": "/mnt/data"},
        {"name": "scratch", "mountPath": "/scratch"},
    ]


def test_gcsfuse_mount_options_are_a_beta_key_split_on_semicolons() -> None:
    volume = (
        "--add-volume=name=data,type=cloud-storage,bucket=b,mount-options=stat-cache-ttl=1s;implicit-dirs"
    )
    (found,) = _load(volume, "beta")["template"]["volumes"]
    assert found["gcs"]["mountOptions"] == ["stat-cache-ttl=1s", "implicit-dirs"]
    assert _refused(volume) == [
        f"argv[{FIRST}]: a cloud-storage volume takes mount-options only under `gcloud beta|alpha run deploy`"
    ]


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        ("--add-volume=name=v,type=nfs,location=10.0.0.2", "an nfs volume's location is SERVER:/PATH"),
        ("--add-volume=name=v,type=secret,secret=s", "--add-volume needs name=NAME and type= one of"),
        ("--add-volume=name=v,type=cloud-storage", "a cloud-storage volume needs bucket"),
        ("--add-volume=name=v,type=in-memory,bucket=b", "a in-memory volume takes no bucket"),
        ("--add-volume-mount=volume=v,mount-path=/v", "--add-volume-mount names volume 'v', which no"),
    ],
    ids=["nfs-location", "alpha-type", "no-bucket", "stray-key", "mount-of-nothing"],
)
def test_a_volume_gcloud_would_not_add_is_refused(flags: str, says: str) -> None:
    (found,) = _refused(flags)
    assert found.startswith(f"argv[{FIRST}]: {says}"), found


def test_a_volume_added_twice_is_refused_once_and_its_mount_is_not_a_second_problem() -> None:
    volume = "--add-volume=name=v,type=in-memory"
    assert _refused(f"{volume} {volume} --add-volume-mount=volume=v,mount-path=/v") == [
        f"argv[{FIRST + 1}]: --add-volume adds volume 'v' twice"
    ]


def test_revision_and_service_level_instance_counts_by_track() -> None:
    service = _load("--min-instances=1 --max-instances=3 --min=2")
    assert service["template"]["scaling"] == {"minInstanceCount": 1, "maxInstanceCount": 3}
    assert service["scaling"] == {"minInstanceCount": 2}  # GA gcloud has --min (service level)
    beta = _load("--min=1 --max=5", "beta")
    assert (beta["scaling"], beta["launchStage"]) == ({"minInstanceCount": 1, "maxInstanceCount": 5}, "BETA")
    assert _refused("--max=5") == [
        f"argv[{FIRST}]: --max is a `gcloud beta run deploy` flag: GA gcloud refuses it"
    ]
    assert "scaling" not in _load("--min-instances=default --max-instances=default")["template"]
    (negative,) = _refused("--min-instances=-1")
    assert negative.startswith(f"argv[{FIRST}]: instance count must be a whole number or 'default'")


def test_cpu_allocation_and_boost() -> None:
    fresh = _container(_load(""))["resources"]
    # throttled unless told otherwise; gcloud turns startup boost on for a new service
    assert (fresh["cpuIdle"], fresh["startupCpuBoost"]) == (True, True)
    always = _container(_load("--no-cpu-throttling --no-cpu-boost --cpu=2 --memory=1Gi"))["resources"]
    assert always == {"limits": {"cpu": "2", "memory": "1Gi"}}  # false is a proto3 default: not printed
    assert _refused("--cpu-throttling=true") == [f"argv[{FIRST}]: --cpu-throttling takes no value"]
    (both,) = _refused("--cpu-throttling --no-cpu-throttling")
    assert both.startswith(f"argv[{FIRST + 1}]: --cpu-throttling given with opposite values")


@pytest.mark.parametrize(
    ("spelled", "seconds"),
    [
        ("300", 300),
        ("300s", 300),
        ("5m", 300),
        ("10m5s", 605),
        ("1h", 3600),
        ("0.5h", 1800),
        ("PT5M", 300),
        ("pt1h", 3600),
        ("5M", 300),
        (
            "1d",
            86400,
        ),  # gcloud takes it; the emulator refuses it above 3600 s when seeding, as Cloud Run does
    ],
)
def test_timeout_spellings_gcloud_takes(spelled: str, seconds: int) -> None:
    assert _load(f"--timeout={spelled}")["template"]["timeout"] == f"{seconds}s"


@pytest.mark.parametrize(
    ("spelled", "says"),
    [
        ("0", "must be at least 1s"),
        ("1500ms", "'1500ms' is 1.5s: Cloud Run's timeout is whole seconds"),
        ("5x", "expected a duration"),
        ("m", "expected a duration"),
    ],
)
def test_timeout_spellings_refused(spelled: str, says: str) -> None:
    (found,) = _refused(f"--timeout={spelled}")
    assert found.startswith(f"argv[{FIRST}]: {says}"), found


def test_a_value_flag_given_twice_with_two_values_is_refused_and_once_more_the_same_is_not() -> None:
    assert _refused("--image=other:v2") == [
        f"argv[{FIRST}]: --image given more than once ('us-docker.pkg.dev/demo-project/repo-a/app-a:v1' at "
        f"argv[4], 'other:v2' at argv[{FIRST}]); a seed refuses to guess"
    ]
    assert _load("--region=r1 --region r1")["name"] == "projects/p1/locations/r1/services/svc-a"


@pytest.mark.parametrize(
    ("flag", "says"),
    [
        (
            "--max-instance=3",
            "unknown flag --max-instance of `gcloud run deploy`; did you mean --max-instances?",
        ),
        (
            "--add-gcs-bucket=bucket=b",
            "unknown flag --add-gcs-bucket: a Cloud Storage volume is --add-volume=",
        ),
        ("--tag=green", "--tag routes traffic between revisions"),
        ("--clear-env-vars", "--clear-env-vars changes what an existing service has"),
        ("--source=.", "--source builds from source: a seed deploys an --image"),
        ("--format=json", "--format is a global gcloud flag that says nothing about the service"),
        ("--no-use-http2", "--use-http2 is not converted: seed this service as v2 JSON or Knative YAML"),
        ("--no-quiet", "unknown flag --no-quiet of `gcloud run deploy`; did you mean --quiet?"),
        ("-x", "unknown flag -x"),
    ],
    ids=lambda value: value.split("=")[0] if value.startswith("-") else None,
)
def test_a_flag_a_seed_does_not_take_is_refused_with_why(flag: str, says: str) -> None:
    (found,) = _refused(flag)
    assert found.startswith(f"argv[{FIRST}]: {says}"), found


def test_quiet_and_async_change_nothing() -> None:
    assert _load("--quiet -q --async --allow-unauthenticated") == _load("")


def test_ingress_port_concurrency_and_labels() -> None:
    service = _load(
        "--ingress=internal-and-cloud-load-balancing --port=9000 --concurrency=10 "
        "--update-labels=team=a,tier=web"
    )
    assert service["ingress"] == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
    assert _container(service)["ports"] == [{"name": "http1", "containerPort": 9000}]
    assert service["template"]["maxInstanceRequestConcurrency"] == 10
    assert service["labels"] == {"team": "a", "tier": "web"}
    assert "ports" not in _container(_load("--port=default"))  # the server's 8080
    (none,) = _refused("--ingress=none")  # a v1 annotation value, not one of gcloud's choices
    assert none.startswith(f"argv[{FIRST}]: expected one of all, internal, internal-and-cloud-load-balancing")
    (port,) = _refused("--port=70000")
    assert port.startswith(f"argv[{FIRST}]: --port must be a number from 1 to 65535 or 'default'")
    (labels,) = _refused("--labels=a=1 --update-labels=b=2")
    assert labels.startswith(f"argv[{FIRST + 1}]: at most one of --labels | --update-labels")


def test_cloudsql_instances_args_and_command() -> None:
    service = _load(
        "--add-cloudsql-instances=db1,other:us-east1:db2 --command=python --args=-m,app --args=-v"
    )
    assert service["template"]["volumes"] == [
        {"name": "cloudsql", "cloudSqlInstance": {"instances": ["p1:r1:db1", "other:us-east1:db2"]}}
    ]
    assert (_container(service)["command"], _container(service)["args"]) == (["python"], ["-m", "app", "-v"])
    (twice,) = _refused("--args=-v --args=-v")
    assert twice == f"argv[{FIRST + 1}]: --args: '-v' cannot be specified multiple times"
    (both,) = _refused("--add-cloudsql-instances=a --set-cloudsql-instances=b")
    assert both.startswith(f"argv[{FIRST + 1}]: at most one of --add-cloudsql-instances | --set-cloudsql")


def test_every_problem_of_a_command_line_is_reported_at_once_with_its_place() -> None:
    assert _refused("--timeout=5x --max=2 --set-env-vars=A --ingress=none --tag=t") == [
        f"argv[{FIRST}]: expected a duration such as 300, 300s, 5m, 1.5h or PT1H, got '5x'",
        f"argv[{FIRST + 1}]: --max is a `gcloud beta run deploy` flag: GA gcloud refuses it",
        f"argv[{FIRST + 2}]: 'A' is not KEY=VALUE",
        f"argv[{FIRST + 3}]: expected one of all, internal, internal-and-cloud-load-balancing, got 'none'",
        f"argv[{FIRST + 4}]: --tag routes traffic between revisions, which a seed from one deploy does not "
        "have",
    ]


# --- held to the installed gcloud -------------------------------------------------------------------------


def _deploy_flags(tree: Mapping[str, Any], *track: str) -> Mapping[str, Any]:
    node = tree
    for word in (*track, "run", "deploy"):
        node = node["commands"][word]
    flags: Mapping[str, Any] = node["flags"]
    return flags


@functools.cache
def _tree() -> Mapping[str, Any]:
    """The installed gcloud's command tree, read once (it is a large file)."""
    return completion_tree(gcloud_or_skip())


def _names(flags: Mapping[str, Any]) -> set[str]:
    return {flag.removeprefix("--") for flag in flags}


def test_the_flag_tables_classify_every_flag_the_installed_gcloud_has_and_only_those() -> None:
    tree = _tree()
    ga, beta, alpha = (_deploy_flags(tree, *track) for track in ((), ("beta",), ("alpha",)))
    every = _names(ga) | _names(beta) | _names(alpha) | _names(tree["flags"])
    converted = VALUE_FLAGS | DICT_FLAGS | LIST_FLAGS | REPEATED_FLAGS | SWITCHES
    hidden = {"platform"}  # taken by gcloud (see below), kept out of its help and command tree
    assert (converted | NOT_CONVERTED.keys()) - hidden == every, (
        "classify each flag gcloud has, and only those"
    )
    assert not converted & NOT_CONVERTED.keys()
    assert not HINTS.keys() & every  # the field's misspellings are not gcloud flags
    prerelease = (_names(beta) | _names(alpha)) - _names(ga)
    assert prerelease & converted == PRERELEASE_FLAGS
    kinds = {**ga, **tree["flags"]}
    assert {name for name in SWITCHES if kinds[f"--{name}"] != "bool"} == set()
    assert {
        name for name in converted - SWITCHES - hidden if kinds.get(f"--{name}", "value") == "bool"
    } == set()


def test_every_choice_gcloud_offers_loads() -> None:
    ga = _deploy_flags(_tree())
    choices = {flag: ga[f"--{flag}"] for flag in ("ingress", "execution-environment", "vpc-egress")}
    assert all(isinstance(offered, list) and offered for offered in choices.values()), choices
    for flag, offered in choices.items():
        for choice in offered:
            _load(f"--{flag}={choice}" + (" --vpc-connector=c" if flag == "vpc-egress" else ""))


# (flags, track, whether gcloud takes the command line while parsing it), as the converter expects; what
# the command tree settles (which flags a track has, the choices) is checked above without running gcloud.
GCLOUD_PARSES = [
    ("--min=2 --timeout=PT5M --platform=managed --port=default", "", True),
    ("--no-quiet", "", False),
    ("--set-env-vars=A=1 --update-env-vars=B=2", "", False),
    ("--set-env-vars=A=1 --set-env-vars=A=1", "", False),
]


def test_the_command_lines_gcloud_parses_or_refuses_here_it_parses_or_refuses_too() -> None:
    gcloud = gcloud_or_skip()
    commands = [
        Command(tuple(shlex.split(f"{track} {BASE} {flags} --region=r1 --project=p1")), flags)
        for flags, track, _ in GCLOUD_PARSES
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        said = list(pool.map(lambda command: problem(gcloud, command), commands))
    for (flags, track, takes), answer in zip(GCLOUD_PARSES, said, strict=True):
        assert (answer is None) == takes, (track, flags, answer)
        assert takes or "exit 2" in str(answer), answer  # refused as a usage error, not later
        if takes:
            _load(flags, track)
        else:
            assert _refused(flags, track)
