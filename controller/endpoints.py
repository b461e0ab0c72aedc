"""The controller's HTTP face on `$PORT`: health, readiness, Prometheus metrics, status, a pass on demand.

Owns the routes and nothing else; every answer is read from the `Controller`:

    GET  /healthz     200 while the loop is alive (it ticked or started a pass recently), else 503
    GET  /readyz      200 once the first pass is done, else 503
    GET  /metrics     Prometheus text format
    GET  /status      JSON: the controller, then each service's conditions, last plan and outcome
    POST /reconcile   a pass now (a git webhook); `?service=NAME` or {"service": NAME} also forgives
                      that service's backoff; 202, or 404 for a service that is not declared

Served by the standard library's threading HTTP server: a handful of requests a minute need no more.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST

from controller.runner import Controller

__all__ = ["EndpointServer"]

_MAX_BODY = 65536  # a webhook names one service; anything bigger is not for us


class EndpointServer:
    def __init__(self, controller: Controller, port: int, host: str = "0.0.0.0") -> None:
        handler = type("Handler", (_Handler,), {"controller": controller})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> EndpointServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    controller: Controller
    server_version = "cloudrun-reconciler"
    timeout = 10  # a client that sends less than it announced is dropped, not waited on

    def log_message(self, *_: Any) -> None:  # health probes every few seconds would drown the logs
        pass

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        controller = self.controller
        if path == "/healthz":
            alive = controller.healthy()
            self._json(200 if alive else 503, {"alive": alive, "passes": controller.passes})
        elif path == "/readyz":
            ready = controller.ready
            self._json(200 if ready else 503, {"ready": ready, "passes": controller.passes})
        elif path == "/metrics":
            self._send(200, controller.metrics.render(), CONTENT_TYPE_LATEST)
        elif path == "/status":
            self._json(200, controller.status.document())
        else:
            self._json(404, {"error": f"no such endpoint: GET {path}"})

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != "/reconcile":
            self._json(404, {"error": f"no such endpoint: POST {parts.path}"})
            return
        service = parse_qs(parts.query).get("service", [None])[0]
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._json(411, {"error": "send the body with a Content-Length, not chunked"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self._json(400, {"error": f"Content-Length must be a number of bytes up to {_MAX_BODY}"})
            return
        if length:
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                self._json(400, {"error": f"the body is not JSON: {error}"})
                return
            if not isinstance(body, dict):
                self._json(400, {"error": 'the body must be a JSON object: {"service": NAME} or {}'})
                return
            named = body.get("service")
            if named is not None and not isinstance(named, str):
                self._json(400, {"error": '"service" must be a service name (a string)'})
                return
            service = named or service
        if not self.controller.request(service):
            self._json(404, {"error": f"no declared service is named {service!r}"})
            return
        self._json(202, {"accepted": True, "service": service})

    def _json(self, status: int, document: Any) -> None:
        self._send(status, json.dumps(document, indent=2).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client went away (or timed out): nobody is left to answer
            self.close_connection = True
