"""The controller's HTTP face under odd requests: every request gets an answer, none a traceback, and
only a well-formed `POST /reconcile` asks for a pass."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.clock import ManualClock
from controller.cloudrun import CloudRunServices
from controller.endpoints import EndpointServer
from controller.runner import Controller, RunSettings
from emulator import Emulator
from tests.conftest import ROOT


@pytest.fixture
def served(
    reference: Emulator, gateway: CloudRunServices, tmp_path: Path
) -> Iterator[tuple[Controller, int]]:
    path = tmp_path / "desired-state.yaml"
    path.write_text((ROOT / "desired-state.yaml").read_text())
    controller = Controller(RunSettings(file=str(path)), gateway, clock=ManualClock())
    controller.load()
    server = EndpointServer(controller, 0, host="127.0.0.1").start()
    try:
        yield controller, server.port
    finally:
        server.stop()


def raw(port: int, request: bytes) -> tuple[int, dict[str, object]]:
    """Send bytes as they are (no client library tidies them up) and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(request)
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body or b"{}")


def post(port: int, body: bytes, length: str | None = None) -> tuple[int, dict[str, object]]:
    size = str(len(body)) if length is None else length
    request = f"POST /reconcile HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode() + body
    return raw(port, request)


@pytest.mark.parametrize(
    ("body", "length", "code"),
    [
        (b'{"service": "cagent-api"}', None, 202),
        (b"", None, 202),  # the whole fleet
        (b'{"service": "nobody"}', None, 404),
        (b'{"service": 5}', None, 400),  # not a name: never read as "the whole fleet"
        (b"{not json", None, 400),
        (b'{"service": "\xff\xfe"}', None, 400),  # not UTF-8
        (b"{}", "abc", 400),
        (b"{}", "-1", 400),
        (b"x" * 10, str(10**9), 400),  # a body past the cap is refused before it is read
        (b'"cagent-api"', None, 400),  # not an object: never read as "the whole fleet"
        (b"[]", None, 400),
    ],
)
def test_post_reconcile_answers_every_body(
    served: tuple[Controller, int], body: bytes, length: str | None, code: int
) -> None:
    controller, port = served
    status, answer = post(port, body, length)
    assert status == code, answer
    assert (code == 202) == bool(controller._requested)
    assert raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")[0] in (200, 503), "still serving"


def test_a_chunked_body_is_refused_not_read_as_the_whole_fleet(served: tuple[Controller, int]) -> None:
    controller, port = served
    body = b'{"service": "nope"}'
    request = (
        b"POST /reconcile HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{len(body):x}\r\n".encode()
        + body
        + b"\r\n0\r\n\r\n"
    )
    status, _ = raw(port, request)
    assert status == 411 and not controller._requested
