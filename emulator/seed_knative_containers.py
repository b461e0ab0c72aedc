"""A Knative revision template's containers and volumes, as the Cloud Run v2 JSON of the same revision.

Owns the field-by-field mapping of `spec.template.spec.containers[]` and `volumes[]` from the v1 shape
(`gcloud run services describe --format=yaml`, `gcloud run services replace`) to v2: env with Secret
Manager references (another project's through the `run.googleapis.com/secrets` aliases), resource
limits, ports, probes, mounts, and volumes (secret, in-memory emptyDir, Cloud Storage FUSE and Cloud SQL
through CSI, NFS). Anything Cloud Run cannot hold (a ConfigMap reference,
resource requests, `envFrom`) is a problem at its path, never dropped. Volume shapes follow gcloud's own
v1/v2 builders (`googlecloudsdk/command_lib/run/volumes.py`).
"""

from __future__ import annotations

import re
from typing import Any

from emulator.seed_reader import Node, Problems

__all__ = ["GCSFUSE_DRIVER", "containers", "secret_aliases", "volumes"]

GCSFUSE_DRIVER = "gcsfuse.run.googleapis.com"
CLOUDSQL_DRIVER = "cloudsql.run.googleapis.com"
_REMOTE_SECRET = re.compile(r"projects/[0-9]{1,19}/secrets/[a-zA-Z0-9_-]{1,255}")
_UNSUPPORTED_ENV_SOURCE = (
    "unsupported source: Cloud Run takes a plain `value` or `valueFrom.secretKeyRef` (Secret Manager)"
)


def containers(spec: Node) -> list[dict[str, Any]]:
    found = [_container(node) for node in spec.children("containers")]
    if not found:
        spec.problem("containers", "a service needs at least one container")
    return found


def _container(node: Node) -> dict[str, Any]:
    container: dict[str, Any] = {}
    for key, target in (("name", "name"), ("image", "image"), ("workingDir", "workingDir")):
        if (value := node.text(key)) is not None:
            container[target] = value
    if "image" not in container:
        node.problem("image", "required")
    for key in ("command", "args"):
        if values := node.texts(key):
            container[key] = values
    if env := [_env(entry) for entry in node.children("env")]:
        container["env"] = [entry for entry in env if entry]
    if (resources := node.child("resources")) is not None:
        container["resources"] = _resources(resources)
    if ports := [_port(port) for port in node.children("ports")]:
        container["ports"] = ports
    if mounts := [_mount(mount) for mount in node.children("volumeMounts")]:
        container["volumeMounts"] = mounts
    for key in ("livenessProbe", "startupProbe", "readinessProbe"):
        if (probe := node.child(key)) is not None:
            container[key] = _probe(probe)
    node.finish({"envFrom": "Cloud Run takes env entries one by one (name with value or secretKeyRef)"})
    return container


def _env(node: Node) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if (name := node.text("name")) is None:
        node.problem("name", "required")
    else:
        entry["name"] = name
    if (value := node.text("value")) is not None:
        entry["value"] = value
    if (source := node.child("valueFrom")) is not None:
        if (secret := source.child("secretKeyRef")) is not None:
            reference = {"secret": secret.text("name"), "version": secret.text("key")}
            if reference["secret"] is None:
                secret.problem("name", "required: the Secret Manager secret")
            if reference["version"] is None:  # v1's SecretKeySelector.key: "Required"
                secret.problem("key", "required: the secret's version ('latest', a number or an alias)")
            entry["valueSource"] = {"secretKeyRef": reference}
            secret.finish()
        for unsupported in ("configMapKeyRef", "fieldRef", "resourceFieldRef"):
            if source.has(unsupported):
                source.raw(unsupported)
                source.problem(unsupported, _UNSUPPORTED_ENV_SOURCE)
        source.finish()
    node.finish()
    return entry


def _resources(node: Node) -> dict[str, Any]:
    limits = node.text_map("limits")
    if node.has("requests"):
        node.raw("requests")
        node.problem("requests", "Cloud Run has no resource requests: give limits only")
    node.finish()
    return {"limits": limits} if limits else {}


def _port(node: Node) -> dict[str, Any]:
    port: dict[str, Any] = {}
    if (name := node.text("name")) is not None:
        port["name"] = name
    if (number := node.number("containerPort")) is not None:
        port["containerPort"] = number
    if (protocol := node.text("protocol")) not in (None, "TCP"):
        node.problem("protocol", f"Cloud Run serves TCP only, got {protocol!r}")
    node.finish()
    return port


def _mount(node: Node) -> dict[str, Any]:
    mount = {"name": node.text("name"), "mountPath": node.text("mountPath")}
    for key, value in mount.items():
        if value is None:
            node.problem(key, "required")
    node.finish({"subPath": "Cloud Run volume mounts have no subPath"})
    return {key: value for key, value in mount.items() if value is not None}


def _probe(node: Node) -> dict[str, Any]:
    probe: dict[str, Any] = {}
    for key in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "failureThreshold"):
        if (value := node.number(key)) is not None:
            probe[key] = value
    if (http := node.child("httpGet")) is not None:
        probe["httpGet"] = _action(http, ("path", "port"))
        if headers := [_header(header) for header in http.children("httpHeaders")]:
            probe["httpGet"]["httpHeaders"] = headers
        http.finish()
    if (tcp := node.child("tcpSocket")) is not None:
        probe["tcpSocket"] = _action(tcp, ("port",))
        tcp.finish()
    if (grpc := node.child("grpc")) is not None:
        probe["grpc"] = _action(grpc, ("port", "service"))
        grpc.finish()
    node.finish()
    return probe


def _action(node: Node, keys: tuple[str, ...]) -> dict[str, Any]:
    action: dict[str, Any] = {}
    for key in keys:
        value = node.number(key) if key == "port" else node.text(key)
        if value is not None:
            action[key] = value
    return action


def _header(node: Node) -> dict[str, Any]:
    header = {"name": node.text("name"), "value": node.text("value")}
    node.finish()
    return {key: value for key, value in header.items() if value is not None}


def volumes(spec: Node) -> list[dict[str, Any]]:
    return [_volume(node) for node in spec.children("volumes")]


def _volume(node: Node) -> dict[str, Any]:
    volume: dict[str, Any] = {"name": node.text("name")}
    if volume["name"] is None:
        node.problem("name", "required")
    if (secret := node.child("secret")) is not None:
        volume["secret"] = _secret(secret)
    if (empty := node.child("emptyDir")) is not None:
        volume["emptyDir"] = _empty_dir(empty)
    if (csi := node.child("csi")) is not None:
        volume.update(_csi(csi))
    if (nfs := node.child("nfs")) is not None:
        volume["nfs"] = {"server": nfs.text("server"), "path": nfs.text("path")}
        if (read_only := nfs.flag("readOnly")) is not None:
            volume["nfs"]["readOnly"] = read_only
        nfs.finish()
    if len([source for source in ("secret", "emptyDir", "csi", "nfs") if node.has(source)]) != 1:
        node.problem((), "a volume needs exactly one source: secret, emptyDir, csi or nfs")
    node.finish()
    return volume


def _secret(node: Node) -> dict[str, Any]:
    source: dict[str, Any] = {"secret": node.text("secretName")}
    if (mode := node.number("defaultMode")) is not None:
        source["defaultMode"] = mode
    items = []
    for entry in node.children("items"):
        # In v1 an item's `key` is the secret's version; v2 names it so.
        mapped: dict[str, Any] = {"version": entry.text("key"), "path": entry.text("path")}
        if (mode := entry.number("mode")) is not None:
            mapped["mode"] = mode
        entry.finish()
        items.append(mapped)
    if items:
        source["items"] = items
    node.finish()
    return source


def _empty_dir(node: Node) -> dict[str, Any]:
    source: dict[str, Any] = {}
    medium = node.text("medium")
    if medium is not None:
        if medium.lower() != "memory":
            node.problem("medium", f"Cloud Run's emptyDir lives in memory: expected Memory, got {medium!r}")
        source["medium"] = "MEMORY"
    if (size := node.text("sizeLimit")) is not None:
        source["sizeLimit"] = size
    node.finish()
    return source


def _csi(node: Node) -> dict[str, Any]:
    driver = node.text("driver")
    read_only = node.flag("readOnly")
    attributes = node.text_map("volumeAttributes")
    node.finish()
    if driver == GCSFUSE_DRIVER:
        gcs: dict[str, Any] = {"bucket": attributes.pop("bucketName", None)}
        if gcs["bucket"] is None:
            node.problem("volumeAttributes", "bucketName is required")
        if read_only is not None:
            gcs["readOnly"] = read_only
        # v1 joins the mount options with commas; v2 holds them as a list (gcloud: `replace(';', ',')`).
        if options := attributes.pop("mountOptions", ""):
            gcs["mountOptions"] = [option.strip() for option in options.split(",") if option.strip()]
        for key in attributes:
            node.problem(("volumeAttributes", key), "unknown attribute of the Cloud Storage FUSE driver")
        return {"gcs": gcs}
    if driver == CLOUDSQL_DRIVER:
        instances = attributes.pop("instances", "")
        return {"cloudSqlInstance": {"instances": [i.strip() for i in instances.split(",") if i.strip()]}}
    node.problem("driver", f"unknown CSI driver {driver!r}: expected {GCSFUSE_DRIVER} or {CLOUDSQL_DRIVER}")
    return {}


def secret_aliases(text: str, where: str, template: dict[str, Any], p: Problems) -> None:
    """`run.googleapis.com/secrets: ALIAS:projects/NUMBER/secrets/NAME,...`: v1 names a secret of another
    project by an alias; v2 names it in full, so each reference to an alias becomes the secret's name."""
    aliases: dict[str, str] = {}
    for pair in filter(None, (part.strip() for part in text.split(","))):
        alias, _, secret = pair.partition(":")
        if not alias or not _REMOTE_SECRET.fullmatch(secret):
            p.add(where, f"{pair!r} is not ALIAS:projects/NUMBER/secrets/NAME")
        else:
            aliases[alias] = secret
    references = [
        entry["valueSource"]["secretKeyRef"]
        for container in template["containers"]
        for entry in container.get("env", [])
        if "valueSource" in entry
    ]
    references += [volume["secret"] for volume in template.get("volumes", []) if "secret" in volume]
    for reference in references:
        reference["secret"] = aliases.get(reference["secret"], reference["secret"])
