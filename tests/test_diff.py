"""The pure diff: only declared knobs, compared by meaning, in one fixed order. No server, no mock."""

from __future__ import annotations

import dataclasses

import pytest

from controller.diff import ManagedField, TargetError, diff_service, select_container
from controller.model import GcsVolume, ObservedContainer, ObservedService, OtherVolume
from desired import SecretRef, ServiceKey, ServiceSpec

KEY = ServiceKey(project="demo-project", region="us-central1", name="cagent-api")
WAL_URL = "sqlite:///work/sessions.db?_journal_mode=WAL&_busy_timeout=5000"


def observed(**overrides: object) -> ObservedService:
    container = ObservedContainer(
        index=0,
        name="app",
        image="img:1",
        serves_ingress=True,
        cpu_idle=False,
        env=(("DATABASE_URL", WAL_URL), ("LOG_LEVEL", "info")),
    )
    base = ObservedService(
        key=KEY,
        etag='"e1"',
        generation=3,
        timeout_seconds=3600.0,
        service_min_instances=1,
        service_max_instances=10,
        revision_min_instances=0,
        revision_max_instances=100,
        containers=(container,),
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


def app_container(**fields: object) -> ObservedContainer:
    """The single ingress container `app`, CPU always allocated, with `fields` overriding."""
    base = ObservedContainer(index=0, name="app", image="i", serves_ingress=True, cpu_idle=False)
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


def spec(**fields: object) -> ServiceSpec:
    return ServiceSpec.model_validate(
        {"name": "cagent-api", "project": "demo-project", "region": "us-central1", **fields}
    )


FULL = {
    "timeout": "1h",
    "scaling": {"level": "service", "minInstances": 1, "maxInstances": 10},
    "cpuAlwaysAllocated": True,
    "env": {"DATABASE_URL": WAL_URL},
}


def test_a_service_that_matches_every_declared_knob_has_no_changes() -> None:
    assert diff_service(spec(**FULL), observed()) == ()


def test_undeclared_knobs_are_never_compared() -> None:
    live = observed(
        timeout_seconds=300.0,
        service_min_instances=0,
        containers=(
            ObservedContainer(index=0, name="app", image="img:2", serves_ingress=True, cpu_idle=True, env=()),
        ),
    )
    assert diff_service(spec(), live) == ()


def test_each_drifted_knob_is_one_change_in_print_order() -> None:
    live = observed(
        timeout_seconds=300.0,
        service_min_instances=0,
        service_max_instances=None,
        containers=(
            ObservedContainer(
                index=0,
                name="app",
                image="img:1",
                serves_ingress=True,
                cpu_idle=True,
                env=(("DATABASE_URL", "sqlite:///work/sessions.db"),),
            ),
        ),
    )
    changes = diff_service(spec(**FULL), live)
    assert [(c.path, c.old, c.new) for c in changes] == [
        ("scaling.min_instance_count", 0, 1),
        ("scaling.max_instance_count", None, 10),
        ("template.timeout", 300.0, 3600),
        ("template.containers[app].resources.cpu_idle", True, False),
        ("template.containers[app].env[DATABASE_URL]", "sqlite:///work/sessions.db", WAL_URL),
    ]
    assert [c.field.creates_revision for c in changes] == [False, False, True, True, True]


def test_revision_level_bounds_compare_against_the_template_and_its_default_of_100() -> None:
    changes = diff_service(
        spec(scaling={"level": "revision", "minInstances": 0, "maxInstances": 100}), observed()
    )
    assert changes == ()
    changes = diff_service(spec(scaling={"level": "revision", "maxInstances": 1}), observed())
    assert [(c.field, c.old, c.new) for c in changes] == [(ManagedField.REVISION_MAX_INSTANCES, 100, 1)]


def test_a_service_level_bound_is_not_satisfied_by_a_revision_level_one() -> None:
    live = observed(service_min_instances=0, revision_min_instances=1)
    changes = diff_service(spec(scaling={"level": "service", "minInstances": 1}), live)
    assert [c.path for c in changes] == ["scaling.min_instance_count"]


def test_env_vars_compare_by_name_not_position() -> None:
    container = ObservedContainer(
        index=0, name="app", image="i", serves_ingress=True, cpu_idle=False, env=(("B", "2"), ("A", "1"))
    )
    assert diff_service(spec(env={"A": "1", "B": "2"}), observed(containers=(container,))) == ()


def test_an_env_var_missing_live_is_added() -> None:
    (change,) = diff_service(spec(env={"NEW": "x"}), observed())
    assert (change.path, change.old, change.new) == ("template.containers[app].env[NEW]", None, "x")


def test_secret_references_match_by_short_or_full_name() -> None:
    container = app_container(
        env=(("DB", SecretRef(secret="projects/demo-project/secrets/db", version="2")),)
    )
    live = observed(containers=(container,))
    assert diff_service(spec(env={"DB": {"secret": "db", "version": "2"}}), live) == ()
    (change,) = diff_service(spec(env={"DB": {"secret": "db", "version": "3"}}), live)
    assert change.new == SecretRef(secret="db", version="3")


def test_a_plain_value_replacing_a_secret_reference_is_a_change() -> None:
    container = app_container(env=(("DB", SecretRef(secret="db", version="latest")),))
    (change,) = diff_service(spec(env={"DB": "sqlite:///x"}), observed(containers=(container,)))
    assert (change.old, change.new) == (SecretRef(secret="db", version="latest"), "sqlite:///x")


def _containers(*specs: tuple[str, bool]) -> tuple[ObservedContainer, ...]:
    return tuple(
        ObservedContainer(index=i, name=n, image="i", serves_ingress=p, cpu_idle=True)
        for i, (n, p) in enumerate(specs)
    )


def test_the_managed_container_is_the_named_one_else_the_only_one_else_the_ingress_one() -> None:
    assert (
        select_container(spec(container="sidecar"), _containers(("app", True), ("sidecar", False))).name
        == "sidecar"
    )
    assert select_container(spec(), _containers(("solo", False))).name == "solo"
    assert select_container(spec(), _containers(("proxy", False), ("app", True))).name == "app"


@pytest.mark.parametrize(
    ("declared", "containers", "reason"),
    [
        ("missing", (("app", True),), "container 'missing' not found"),
        (None, (("a", False), ("b", False)), "name the one to manage"),
    ],
)
def test_an_unmatched_container_is_an_error_not_a_guess(
    declared: str | None, containers: tuple[tuple[str, bool], ...], reason: str
) -> None:
    fields = {"container": declared} if declared else {}
    with pytest.raises(TargetError, match=reason):
        diff_service(spec(cpuAlwaysAllocated=True, **fields), observed(containers=_containers(*containers)))


def test_mount_options_compare_as_a_set() -> None:
    volume = GcsVolume("bucket-a", False, frozenset({"stat-cache-ttl=1s", "enable-streaming-writes=false"}))
    container = dataclasses.replace(observed().containers[0], volume_mounts=(("data", "/data"),))
    live = observed(volumes=(("data", volume),), containers=(container,))
    declared = {
        "volume": {
            "name": "data",
            "bucket": "bucket-a",
            "mountPath": "/data",
            "mountOptions": ["enable-streaming-writes=false", "stat-cache-ttl=1s"],
        }
    }
    assert diff_service(spec(**declared), live) == ()


def test_a_missing_volume_and_mount_are_two_changes() -> None:
    declared = {"volume": {"name": "data", "bucket": "bucket-a", "mountPath": "/data"}}
    changes = diff_service(spec(**declared), observed())
    assert [(c.path, c.old, c.new) for c in changes] == [
        ("template.volumes[data]", None, GcsVolume("bucket-a")),
        ("template.containers[app].volume_mounts[data]", None, "/data"),
    ]
    assert {c.field.mask_path for c in changes} == {"template.volumes", "template.containers"}


def test_a_volume_of_another_kind_under_the_declared_name_is_an_error_never_a_replacement() -> None:
    live = observed(volumes=(("data", OtherVolume("secret")),))
    with pytest.raises(TargetError, match="exists as a secret volume, not Cloud Storage"):
        diff_service(spec(volume={"name": "data", "bucket": "b-1", "mountPath": "/d"}), live)


def test_read_only_and_mount_options_left_out_keep_their_live_values() -> None:
    volume = GcsVolume("bucket-a", True, frozenset({"implicit-dirs"}))
    container = dataclasses.replace(observed().containers[0], volume_mounts=(("data", "/data"),))
    live = observed(volumes=(("data", volume),), containers=(container,))
    assert diff_service(spec(volume={"name": "data", "bucket": "bucket-a", "mountPath": "/data"}), live) == ()


def test_a_mount_path_taken_by_another_volume_is_an_error() -> None:
    container = dataclasses.replace(observed().containers[0], volume_mounts=(("other", "/data"),))
    with pytest.raises(TargetError, match="/data in container app is where volume 'other' is mounted"):
        diff_service(
            spec(volume={"name": "data", "bucket": "b-1", "mountPath": "/data"}),
            observed(containers=(container,)),
        )


def test_only_declared_labels_and_annotations_are_compared() -> None:
    live = observed(labels=(("team", "a"), ("cost", "x")), annotations=(("example.com/a", "1"),))
    changes = diff_service(spec(labels={"team": "b"}, annotations={"example.com/a": "1"}), live)
    assert [(c.path, c.old, c.new, c.field.mask_path) for c in changes] == [
        ("labels[team]", "a", "b", "labels")
    ]


def test_execution_environment_unset_live_is_drift_when_declared() -> None:
    (change,) = diff_service(spec(executionEnvironment="gen2"), observed())
    assert (change.path, change.old, change.new) == ("template.execution_environment", None, "gen2")
    assert diff_service(spec(executionEnvironment="gen2"), observed(execution_environment="gen2")) == ()


def test_startup_boost_is_a_container_field() -> None:
    (change,) = diff_service(spec(startupCpuBoost=True), observed())
    assert change.path == "template.containers[app].resources.startup_cpu_boost"
    assert change.field.creates_revision


def test_a_secret_in_another_project_is_not_the_same_secret() -> None:
    container = dataclasses.replace(
        observed().containers[0], env=(("DB", SecretRef(secret="db", version="1")),)
    )
    wanted = {"DB": {"secret": "projects/other-project/secrets/db", "version": "1"}}
    (change,) = diff_service(spec(env=wanted), observed(containers=(container,)))
    assert change.new == SecretRef(secret="projects/other-project/secrets/db", version="1")


def test_a_repeated_env_name_reads_as_the_last_one_as_the_runtime_does() -> None:
    container = dataclasses.replace(observed().containers[0], env=(("A", "old"), ("A", "new")))
    assert diff_service(spec(env={"A": "new"}), observed(containers=(container,))) == ()


def test_an_unnamed_container_is_chosen_by_its_position() -> None:
    containers = (
        ObservedContainer(index=0, name="", image="i", serves_ingress=False, cpu_idle=True),
        ObservedContainer(index=1, name="", image="j", serves_ingress=True, cpu_idle=True),
    )
    assert select_container(spec(container="#0"), containers).index == 0


@pytest.mark.parametrize(
    ("live", "wanted", "same"),
    [
        (f"{WAL_URL}", "sqlite:///work/sessions.db?_busy_timeout=5000&_journal_mode=WAL", True),
        (
            "file:/w/a.db?_journal_mode=DELETE&_journal_mode=WAL",
            "file:/w/a.db?_journal_mode=WAL&_journal_mode=DELETE",
            False,
        ),
        ("postgres://u@h/db?sslmode=require&x=1", "postgres://u@h/db?x=1&sslmode=require", True),
        ("sqlite:///work/a.db?_journal_mode=WAL", "sqlite:///work/b.db?_journal_mode=WAL", False),
        ("a=1&b=2", "b=2&a=1", False),  # not a URL: compared as written
    ],
)
def test_url_query_parameters_compare_in_any_order_but_repeats_keep_theirs(
    live: str, wanted: str, same: bool
) -> None:
    container = app_container(env=(("DATABASE_URL", live),))
    changes = diff_service(spec(env={"DATABASE_URL": wanted}), observed(containers=(container,)))
    assert (changes == ()) is same
