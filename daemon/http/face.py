"""Start the HTTP face of a daemon: the app over its snapshot, store and registry, served by uvicorn.

>>> import tempfile, pathlib, httpx
>>> from driftwarden.daemon.config import Settings
>>> from driftwarden.daemon.io.sources import MemorySource
>>> from driftwarden.daemon.runtime import Daemon
>>> from driftwarden.policies.loader import load_policy
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "p.yaml").write_text("version: 1\\nmodel: m\\nmonitors:\\n  e: {kind: adwin, series: error}\\n")
>>> daemon = Daemon(Settings(state_dir=d / "state"), MemorySource([b'{"model": "m", "id": "1", "prediction": 1}']),
...                 [load_policy(d / "p.yaml")])
>>> server = serve(daemon, "127.0.0.1:0")
>>> _ = daemon.run()
>>> httpx.get(server.url + "/api/v1/status").json()["events"]
1
>>> server.stop(); daemon.close()
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from driftwarden.daemon.http.admin import read_token
from driftwarden.daemon.http.app import Face, create_app
from driftwarden.daemon.http.server import HttpServer, is_loopback, parse_listen

log = logging.getLogger("driftwarden.http")

URL_FILE = "http.url"
"""In the state folder while the daemon serves: its base URL (``driftwarden status`` finds it there)."""


def serve(daemon: Any, listen: str, *, token: str | None = None, token_file: str | Path | None = None) -> HttpServer:
    """Serve ``daemon``'s face on ``listen`` (HOST:PORT) from a thread; call ``stop()`` on shutdown.

    The admin token is ``token``, else read by :func:`read_token`. Without one, the admin endpoints
    are served on a loopback address only (to local callers, without a token)."""
    token = token or read_token(token_file)
    host, _ = parse_listen(listen)
    admin = token is not None or is_loopback(host)
    if not admin:
        log.warning(
            "admin endpoints are off: %s is not a loopback address and no token is set (DRIFTWARDEN_TOKEN)", host
        )
    elif token is None:
        log.info("admin endpoints answer local callers without a token; set DRIFTWARDEN_TOKEN to require one")
    face = Face(
        publisher=daemon.publisher,
        store=daemon.store,
        registry=daemon.registry,
        commands=daemon.commands,
        policies=lambda: daemon.policies,
        token=token,
        admin=admin,
        evidence=daemon.settings.state_dir / "evidence",
    )
    server = HttpServer(create_app(face), listen, url_file=daemon.settings.state_dir / URL_FILE).start()
    return server
