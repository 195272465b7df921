"""Issue 14, item 15: the example model server's body limit holds against ``Content-Length: -1``,
and it can ask for a bearer token."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from driftwarden.examples.credit.server import ModelServer, make_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ModelServer]:
    srv = make_server(tmp_path / "serving", tmp_path / "events.jsonl", token="s3cret")
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def _ask(srv: ModelServer, request: bytes) -> bytes:
    """Send ``request`` and read the answer without closing our side (a body the server waits for never comes)."""
    with socket.create_connection(srv.server_address[:2], timeout=5) as s:
        s.sendall(request)
        return s.recv(65536)


@pytest.mark.parametrize("length", [b"-1", b"+5", b"abc", b"99999999999"])
def test_a_bad_content_length_is_refused_without_reading(server: ModelServer, length: bytes) -> None:
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nContent-Length: " + length
    answer = _ask(server, head + b"\r\n\r\n{")  # before the fix, read(-1) waited for the end of the stream
    assert answer.split(b"\r\n")[0] in (b"HTTP/1.0 400 Bad Request", b"HTTP/1.0 413 Request Entity Too Large")


def test_writes_need_the_bearer_token(server: ModelServer, tmp_path: Path) -> None:
    body = b'{"id": 1, "label": 1}'
    request = b"POST /label HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n" + body
    refused = _ask(server, request % (len(body), b""))
    wrong = _ask(server, request % (len(body), b"Authorization: Bearer nope\r\n"))
    ok = _ask(server, request % (len(body), b"Authorization: Bearer s3cret\r\n"))
    assert [a.split(b"\r\n")[0].split(b" ")[1] for a in (refused, wrong, ok)] == [b"401", b"401", b"200"]
    assert (tmp_path / "events.jsonl").read_bytes().count(b"\n") == 1  # only the authorized label was written
