"""The flags of `gcloud [alpha|beta] run deploy` (as gcloud 528 has them), and what a seed does with each.

Owns the tables the command-line reader works from: the flags a seed converts, by how gcloud parses them
(one value; key=value pairs or list items merged across repeats, as `arg_parsers.UpdateAction` does;
repeated by design; switches with a `--no-` form), the flags only the prerelease tracks have, the groups
of which gcloud takes at most one, and every other flag gcloud has, each with why a seed does not convert
it. tests/test_seed_gcloud.py holds these tables to the installed gcloud's own command tree.
"""

from __future__ import annotations

__all__ = [
    "DICT_FLAGS",
    "EXCLUSIVE",
    "HINTS",
    "LIST_FLAGS",
    "NOT_CONVERTED",
    "NO_NEGATION",
    "PRERELEASE_FLAGS",
    "REPEATED_FLAGS",
    "SWITCHES",
    "VALUE_FLAGS",
]

# One value each; gcloud keeps the last of two, a seed refuses two different ones. `--platform` is hidden
# from gcloud's help and command tree, and still taken.
# fmt: off
VALUE_FLAGS = frozenset({
    "image", "platform", "project", "region", "revision-suffix", "description", "ingress", "timeout",
    "concurrency", "min-instances", "max-instances", "min", "max", "cpu", "memory", "port",
    "service-account", "execution-environment", "vpc-connector", "vpc-egress",
    "add-cloudsql-instances", "set-cloudsql-instances",
})
# fmt: on
# KEY=VALUE,... merged across repeats; a key in two of them is refused, as gcloud refuses it.
DICT_FLAGS = frozenset(
    {"set-env-vars", "update-env-vars", "set-secrets", "update-secrets", "labels", "update-labels"}
)
LIST_FLAGS = frozenset({"command", "args"})  # items merged across repeats; an item given twice is refused
REPEATED_FLAGS = frozenset({"add-volume", "add-volume-mount"})  # each adds one more
SWITCHES = frozenset(
    {"allow-unauthenticated", "async", "cpu-boost", "cpu-throttling", "quiet", "session-affinity"}
)
NO_NEGATION = frozenset({"quiet"})  # gcloud's global --quiet has no --no-quiet
PRERELEASE_FLAGS = frozenset({"max"})  # `gcloud beta|alpha run deploy` only
# gcloud's "At most one of these can be specified" groups, among the flags a seed converts.
EXCLUSIVE = (
    ("set-env-vars", "update-env-vars"),
    ("set-secrets", "update-secrets"),
    ("add-cloudsql-instances", "set-cloudsql-instances"),
    ("labels", "update-labels"),
)
# Spellings seen in the field that gcloud does not have, with what to write instead.
HINTS = {
    "add-gcs-bucket": "a Cloud Storage volume is --add-volume=name=NAME,type=cloud-storage,bucket=BUCKET "
    "with --add-volume-mount=volume=NAME,mount-path=PATH",
    "gcs-fuse-flags": "gcsfuse flags go in --add-volume as mount-options=FLAG1;FLAG2 (semicolons; "
    "`gcloud beta run deploy`)",
}

_CHANGES = (
    "changes what an existing service has, and a seed is the service a first deploy creates: leave it out",
    "clear-binary-authorization clear-cloudsql-instances clear-custom-audiences "
    "clear-encryption-key-shutdown-hours clear-env-vars clear-key clear-labels clear-network "
    "clear-network-tags clear-post-key-revocation-action-type clear-secrets clear-volume-mounts "
    "clear-volumes clear-vpc-connector remove-cloudsql-instances remove-containers remove-custom-audiences "
    "remove-env-vars remove-labels remove-secrets remove-volume remove-volume-mount",
)
_SOURCE = (
    "builds from source: a seed deploys an --image",
    "source function base-image clear-base-image automatic-updates build-env-vars-file build-service-account "
    "build-worker-pool clear-build-env-vars clear-build-service-account clear-build-worker-pool "
    "remove-build-env-vars set-build-env-vars update-build-env-vars allow-unencrypted-build delegate-builds",
)
_TRAFFIC = ("routes traffic between revisions, which a seed from one deploy does not have", "tag no-traffic")
_OTHER = (
    "is not converted: seed this service as v2 JSON or Knative YAML instead",
    "container depends-on startup-probe liveness-probe readiness-probe network subnet network-tags key "
    "encryption-key-shutdown-hours post-key-revocation-action-type binary-authorization breakglass "
    "add-custom-audiences set-custom-audiences gpu gpu-type gpu-zonal-redundancy invoker-iam-check use-http2 "
    "namespace env-vars-file mesh iap default-url deploy-health-check scaling regions",
)
_GLOBAL = (
    "is a global gcloud flag that says nothing about the service (of those, a seed takes --project, --quiet)",
    "access-token-file account billing-project configuration flags-file flatten format help "
    "impersonate-service-account log-http trace-token user-output-enabled verbosity version",
)
# Every other flag gcloud has for `run deploy` (any track) or globally, with why a seed does not take it.
NOT_CONVERTED = {
    name: f"--{name} {reason}"
    for reason, names in (_CHANGES, _SOURCE, _TRAFFIC, _OTHER, _GLOBAL)
    for name in names.split()
}
