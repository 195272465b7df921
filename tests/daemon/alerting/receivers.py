"""Real parts for the alerting tests: a local webhook receiver (an HTTP server that records what
it gets), a real SMTP server (aiosmtpd) and a real Alertmanager (Debian's prometheus-alertmanager)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

KEY_HEADER = "X-Driftwarden-Key"
ALERTMANAGER = "prometheus-alertmanager"
WAIT = 60.0
"""Longest wait for a server to come up or a notification to arrive (a loaded 2-core CI machine)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Webhook:
    """An HTTP server on 127.0.0.1 recording every POST (path, headers, JSON body); it can go down
    and come back on the same port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def up(self) -> Webhook:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with owner._lock:
                    owner.received.append(
                        {"path": self.path, "headers": dict(self.headers), "body": json.loads(body or b"null")}
                    )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def posts(self, path: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.received if path is None or r["path"] == path]

    def wait_for(self, predicate: Any, timeout: float = WAIT) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            posts = self.posts()
            if predicate(posts):
                return posts
            time.sleep(0.1)
        raise AssertionError(f"the receiver did not get what was expected in {timeout} s: {self.posts()}")


def alertmanager_binary() -> str:
    path = shutil.which(ALERTMANAGER) or shutil.which("alertmanager")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{ALERTMANAGER} is not installed: .ci/install-test-tools installs it")
        pytest.skip(f"{ALERTMANAGER} is not installed (bash .ci/install-test-tools)")
    return path


@contextmanager
def alertmanager(tmp: Path, webhook_url: str) -> Iterator[str]:
    """A real Alertmanager on a free port routing every alert to ``webhook_url`` (resolved ones
    too), grouping nothing away; yields its base URL and stops it."""
    binary = alertmanager_binary()
    port = free_port()
    config = tmp / "alertmanager.yml"
    config.write_text(
        "route:\n"
        "  receiver: hook\n"
        "  group_by: ['...']\n"
        "  group_wait: 0s\n"
        "  group_interval: 1s\n"
        "  repeat_interval: 1h\n"
        "receivers:\n"
        "  - name: hook\n"
        "    webhook_configs:\n"
        f"      - url: '{webhook_url}'\n"
        "        send_resolved: true\n"
    )
    log = (tmp / "alertmanager.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                with urllib.request.urlopen(base + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("Alertmanager did not start: " + (tmp / "alertmanager.log").read_text()[-2000:])
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class Mailbox:
    """A real SMTP server (aiosmtpd) on a free port keeping every message."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.port = free_port()
        self._controller: Any = None

    def __enter__(self) -> Mailbox:
        from aiosmtpd.controller import Controller

        box = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                box.messages.append(
                    {"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "data": envelope.content.decode()}
                )
                return "250 OK"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._controller.stop()
