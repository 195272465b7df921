"""uvicorn in its own thread: started before the first poll, stopped on shutdown.

>>> from fastapi import FastAPI
>>> import httpx
>>> server = HttpServer(FastAPI(), "127.0.0.1:0").start()
>>> httpx.get(server.url + "/nothing").status_code
404
>>> server.stop(); server.running
False
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

log = logging.getLogger("driftwarden.http")

DEFAULT_LISTEN = "127.0.0.1:9808"
"""Loopback unless told otherwise (admin endpoints and the page are then local only); the port is in the
9100-9999 range Prometheus exporters use."""

START_TIMEOUT = 10.0
"""Seconds to wait for the server to listen before the daemon gives up starting."""

STOP_TIMEOUT = 5.0
"""Seconds a stop waits for open requests before the thread is left to die with the process."""


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) → (host, port).

    >>> parse_listen("0.0.0.0:9464"), parse_listen("[::1]:80"), parse_listen(":9000")
    (('0.0.0.0', 9464), ('::1', 80), ('127.0.0.1', 9000))
    """
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address {listen!r} is not HOST:PORT")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HttpServer:
    """Serve ``app`` on ``listen`` from a daemon thread."""

    def __init__(self, app: Any, listen: str, *, url_file: Path | None = None) -> None:
        self.host, self.port = parse_listen(listen)
        self.url_file = url_file
        """Written with :attr:`url` once serving, removed on stop."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((self.host, self.port))  # bind now: a taken port fails `run` at once, and port 0 is known
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> HttpServer:
        self._thread = threading.Thread(target=self._serve, name="http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._server.started:
            self.stop()
            raise RuntimeError(f"the HTTP server did not start on {self.url} within {START_TIMEOUT} s")
        if self.url_file is not None:
            self.url_file.write_text(self.url + "\n")
        log.info("HTTP on %s (status page %s/, metrics %s/metrics)", self.url, self.url, self.url)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
        self._socket.close()
        if self.url_file is not None:
            self.url_file.unlink(missing_ok=True)

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._server.serve(sockets=[self._socket]))
        except Exception:  # noqa: BLE001 - a dead server must not take the daemon with it; /metrics just stops
            log.exception("the HTTP server stopped")
        finally:
            loop.close()
