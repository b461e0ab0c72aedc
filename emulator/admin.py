"""A small HTTP control surface for the standalone emulator, on loopback: what tests do in-process.

Owns JSON endpoints that drive the stores the gRPC API serves:
    POST /v1/services   seed what the body holds, in any seed shape (`emulator/seed.py`): v2 Service JSON,
                        v1 Knative YAML or JSON, a `gcloud run deploy` command line; `?project=P&region=R`
                        place services the body leaves unplaced
    POST /v1/edit       {"name", "principal", "client", "service": {partial v2 JSON merged in; a list or
                        a map given replaces the stored one whole}}
    POST /v1/faults     {"method", "count", "code"}, {"method", "share", "code" | "codes": [..], "seed"},
                        {"method", "latency"} (seconds), or {"clear": true}
    POST /v1/points     {"metric_type", "value", "end" (RFC 3339), "resource_labels", "metric_labels"}
    POST /v1/settings   {"operation_polls": N | null, "failing_revisions": "message" | null}
    GET  /v1/calls      calls served, by method
    GET  /v1/faults     {"injected": {method: {code: count}}}: the failures injected so far
    GET  /v1/services   {"services": [v2 Service JSON]}: the stored services, read without an API call
                        (not counted, never failed)
    GET  /v1/writes     {"writes": [...], "next": N}: every stored change from `?since=N` on, each with
                        "via" (UpdateService or edit), "name", "principal", "client", "mask", and the
                        service "before" and "after" as v2 JSON
Errors answer 400 with {"error": …}. Nothing here is reachable off the machine: it binds 127.0.0.1 only.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
from google.protobuf import json_format

from emulator.rules import ApiError
from emulator.seed import SeedError, load_seed_text

__all__ = ["AdminServer"]


class AdminServer:
    """The control endpoint of one running `Emulator`."""

    def __init__(self, emulator: Any, port: int = 0) -> None:
        self._emulator = emulator
        handler = type("Handler", (_Handler,), {"emulator": emulator})
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> AdminServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _json(service: Any) -> dict[str, Any]:
    return dict(json_format.MessageToDict(service))


def _write_json(index: int, write: Any) -> dict[str, Any]:
    return {
        "index": index,
        "via": write.via,
        "name": write.name,
        "principal": write.principal,
        "client": write.client,
        "mask": list(write.mask),
        "before": _json(write.before),
        "after": _json(write.after),
    }


class _Handler(BaseHTTPRequestHandler):
    emulator: Any

    def log_message(self, *_: Any) -> None:  # the emulator prints nothing per request
        return

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        store = self.emulator.store
        if url.path == "/v1/calls":
            self._answer(200, dict(store.calls))
        elif url.path == "/v1/faults":
            self._answer(200, {"injected": store.faults.injected()})
        elif url.path == "/v1/services":
            self._answer(200, {"services": [_json(service) for service in store.snapshot()]})
        elif url.path == "/v1/writes":
            try:
                since = int(parse_qs(url.query).get("since", ["0"])[-1])
            except ValueError:
                self._answer(400, {"error": "since is not a whole number"})
                return
            writes = store.history(max(0, since))
            body = [_write_json(max(0, since) + offset, write) for offset, write in enumerate(writes)]
            self._answer(200, {"writes": body, "next": max(0, since) + len(writes)})
        else:
            self._answer(404, {"error": f"no such endpoint: GET {self.path}"})

    def do_POST(self) -> None:
        routes = {
            "/v1/edit": self._edit,
            "/v1/faults": self._faults,
            "/v1/points": self._points,
            "/v1/settings": self._settings,
        }
        url = urlsplit(self.path)
        route = routes.get(url.path)
        if route is None and url.path != "/v1/services":
            self._answer(404, {"error": f"no such endpoint: POST {self.path}"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode("utf-8")
            if route is None:  # the seed takes the body as it came: any seed shape, not only JSON
                query = {key: values[-1] for key, values in parse_qs(url.query).items()}
                self._answer(200, self._seed(raw, query))
            else:
                self._answer(200, route(json.loads(raw or "{}")))
        except KeyError as error:  # a field the body lacks
            self._answer(400, {"error": f"missing field {error}: see emulator/admin.py for each body"})
        except (ValueError, TypeError, SeedError, ApiError, json_format.ParseError) as error:
            self._answer(400, {"error": str(error)})

    def _answer(self, status: int, document: Any) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _seed(self, body: str, query: dict[str, str]) -> dict[str, Any]:
        services = load_seed_text(
            body, "POST /v1/services", project=query.get("project"), location=query.get("region")
        )
        stored = [self.emulator.store.seed(service) for service in services]
        if len(stored) == 1:
            return {"name": stored[0].name, "etag": stored[0].etag}
        return {"services": [{"name": service.name, "etag": service.etag} for service in stored]}

    def _edit(self, body: dict[str, Any]) -> dict[str, Any]:
        def change(service: Any) -> None:
            # merges message fields; a list or a map given is replaced whole (send all its items)
            json_format.ParseDict(body.get("service", {}), service)

        edited = self.emulator.store.edit(
            body["name"],
            change,
            principal=body.get("principal", "user:operator@example.com"),
            client=body.get("client", ""),
        )
        return {"name": edited.name, "etag": edited.etag, "generation": edited.generation}

    def _faults(self, body: dict[str, Any]) -> dict[str, Any]:
        faults = self.emulator.store.faults
        if body.get("clear"):
            faults.clear()
            return {"cleared": True}
        if "latency" in body:
            faults.add_latency(body["method"], float(body["latency"]))
            return {"method": body["method"], "latency": float(body["latency"])}
        if "share" in body:
            names = body["codes"] if "codes" in body else [body.get("code", "UNAVAILABLE")]
            codes = [grpc.StatusCode[name] for name in names]
            faults.fail_share(body["method"], float(body["share"]), codes, int(body.get("seed", 0)))
            return {"method": body["method"], "codes": [code.name for code in codes]}
        code = grpc.StatusCode[body.get("code", "UNAVAILABLE")]
        faults.fail_next(body["method"], int(body.get("count", 1)), code)
        return {"method": body["method"], "code": code.name}

    def _points(self, body: dict[str, Any]) -> dict[str, Any]:
        self.emulator.metrics.add_point(
            body["metric_type"],
            int(body["value"]),
            datetime.fromisoformat(body["end"]),
            resource_labels=body.get("resource_labels", {}),
            metric_labels=body.get("metric_labels", {}),
            resource_type=body.get("resource_type", "cloud_run_revision"),
        )
        return {"added": 1}

    def _settings(self, body: dict[str, Any]) -> dict[str, Any]:
        store = self.emulator.store
        if "operation_polls" in body:
            store.operation_polls = body["operation_polls"]
        if "failing_revisions" in body:
            store.failing_revisions = body["failing_revisions"]
        return {"operation_polls": store.operation_polls, "failing_revisions": store.failing_revisions}
