"""The example model server: serves predictions from driftwarden's serving directory, writes
every prediction and label as an event for the daemon, and reloads when driftwarden deploys.

    python -m driftwarden.examples.credit.server --serving .driftwarden/serving/credit --events events.jsonl

Endpoints (JSON in, JSON out):

- ``POST /predict`` ``{"id", "features": {...}, "attributes": {...}}`` or
  ``{"instances": [{...}, ...]}`` → ``{"predictions": [{"id", "prediction", "score",
  "version"}]}``; each prediction is appended to the events file (the wire contract) with the
  version that made it;
- ``POST /label`` ``{"id", "label"}`` or ``{"labels": [...]}``: the true outcome, appended to the
  events file (the daemon joins it to the prediction by id);
- ``POST /reload``: load the model the serving directory now points to (driftwarden's ``http``
  deploy target calls this after switching the directory) → ``{"version"}``;
- ``GET /health`` → ``{"status": "ok", "version", "model"}``, or 503 without a model.

The serving path is a symlink that driftwarden switches atomically; the server resolves it
once per load and reads ``VERSION`` and ``model.pkl`` from that one directory, so the version
it reports is the model it serves. Point the daemon at the events file
(``driftwarden run --events events.jsonl``) and give the policy
``deploy: {target: http, path: serving/credit, url: http://HOST:PORT/reload,
health: http://HOST:PORT/health}``.

With ``CREDIT_SERVER_TOKEN`` set, ``/predict`` and ``/label`` (which write events) ask for
``Authorization: Bearer <token>`` (401 otherwise); ``/reload`` and ``/health`` stay open for the
daemon and probes. A body is read only when ``Content-Length`` is a plain count within
:data:`MAX_BODY` (400 for ``-1``, 413 past the limit).

stdlib only (``http.server``): an example, not a production server.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import pickle
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
from threadpoolctl import threadpool_limits

log = logging.getLogger("credit.server")

#: Threads per request: OpenMP's thread team costs more than a request's batch of trees is worth (18x the CPU
#: of one thread for 100 rows, measured on a loaded 2-core machine); the server's threads serve requests in parallel.
SCORING_THREADS = 1
#: Largest request body accepted: a batch of a few thousand predictions.
MAX_BODY = 16 << 20

#: Environment variable holding the bearer token POST requests must carry (unset: no token asked).
TOKEN_ENV = "CREDIT_SERVER_TOKEN"


class BodyError(ValueError):
    """A request body the server refuses before reading it; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ModelHolder:
    """The served model: reloaded from the serving directory on demand, swapped atomically."""

    def __init__(self, serving: Path) -> None:
        self.serving = Path(serving)
        self._lock = threading.Lock()
        self.model: Any = None
        self.version: str | None = None
        self.features: list[str] | None = None

    def reload(self) -> str:
        """Load what the serving path points to now; returns its version."""
        resolved = self.serving.resolve(strict=True)  # one directory: VERSION and model agree
        version = (resolved / "VERSION").read_text().strip()
        with open(resolved / "model.pkl", "rb") as f:
            model = pickle.load(f)
        features = getattr(model, "feature_names_in_", None)
        with self._lock:
            self.model, self.version = model, version
            self.features = None if features is None else [str(c) for c in features]
        log.info("serving %s from %s", version, resolved)
        return version

    def predict(self, rows: list[dict[str, Any]]) -> tuple[list[Any], list[float | None], str]:
        with self._lock:
            model, version, features = self.model, self.version, self.features
        if model is None or version is None:
            raise LookupError("no model loaded")
        frame = pd.DataFrame.from_records(rows)
        if features is not None:
            frame = frame[features]
        with threadpool_limits(limits=SCORING_THREADS, user_api="openmp"):
            predictions = [_plain(p) for p in model.predict(frame)]
            scores: list[float | None] = [None] * len(rows)
            if callable(getattr(model, "predict_proba", None)):
                proba = model.predict_proba(frame)
                if proba.shape[1] == 2:
                    scores = [round(float(s), 6) for s in proba[:, 1]]
        return predictions, scores, version


class EventLog:
    """Append-only JSONL events file, one flushed write per request (the daemon tails it)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, events: list[dict[str, Any]]) -> None:
        data = b"".join(orjson.dumps(e, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n" for e in events)
        with self._lock, open(self.path, "ab") as f:
            f.write(data)


class ModelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], holder: ModelHolder, events: EventLog, model: str, token: str | None = None
    ) -> None:
        super().__init__(address, Handler)
        self.holder, self.events, self.model_name = holder, events, model
        self.token = token
        """Bearer token every POST must carry (``Authorization: Bearer <token>``); None: none asked."""

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"


class Handler(BaseHTTPRequestHandler):
    server: ModelServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    def _reply(self, status: int, body: Any) -> None:
        data = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        """The JSON body, read only when ``Content-Length`` is a plain count within :data:`MAX_BODY`
        (``-1`` or ``+5`` would make ``read`` take the rest of the stream)."""
        header = (self.headers.get("Content-Length") or "0").strip()
        if not header.isdigit():
            raise BodyError(400, f"Content-Length must be a number of bytes, got {header[:20]!r}")
        length = int(header)
        if length > MAX_BODY:
            raise BodyError(413, f"body of {length} bytes is over {MAX_BODY}")
        raw = self.rfile.read(length) if length else b"{}"
        return json.loads(raw or b"{}")

    def _authorized(self) -> bool:
        token = self.server.token
        if token is None:
            return True
        given = self.headers.get("Authorization") or ""
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if self.path.split("?")[0] != "/health":
            return self._reply(404, {"error": f"no route GET {self.path}"})
        holder = self.server.holder
        if holder.version is None:
            return self._reply(503, {"status": "no model", "version": None})
        self._reply(200, {"status": "ok", "version": holder.version, "model": self.server.model_name})

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        route = self.path.split("?")[0]
        if route in ("/predict", "/label") and not self._authorized():
            self.close_connection = True
            return self._reply(401, {"error": "a bearer token is required (Authorization: Bearer <token>)"})
        try:
            body = self._body()
            if route == "/predict":
                return self._predict(body)
            if route == "/label":
                return self._label(body)
            if route == "/reload":
                return self._reply(200, {"version": self.server.holder.reload()})
            return self._reply(404, {"error": f"no route POST {self.path}"})
        except BodyError as e:
            self.close_connection = True  # the unread body must not be taken for the next request
            return self._reply(e.status, {"error": str(e)})
        except LookupError as e:
            return self._reply(503, {"error": str(e)})
        except (ValueError, KeyError, TypeError, OSError, pickle.UnpicklingError) as e:
            return self._reply(400 if route != "/reload" else 503, {"error": f"{type(e).__name__}: {e}"})

    def _predict(self, body: dict[str, Any]) -> None:
        instances = body["instances"] if "instances" in body else [body]
        predictions, scores, version = self.server.holder.predict([i["features"] for i in instances])
        now = time.time()
        events, out = [], []
        for inst, pred, score in zip(instances, predictions, scores, strict=True):
            event = {
                "model": self.server.model_name,
                "id": str(inst["id"]),
                "ts": inst.get("ts", now),
                "features": inst["features"],
                "prediction": pred,
                "score": score,
                "attributes": {**inst.get("attributes", {}), "model_version": version},
            }
            events.append(event)
            out.append({"id": event["id"], "prediction": pred, "score": score, "version": version})
        self.server.events.write(events)
        self._reply(200, {"predictions": out})

    def _label(self, body: dict[str, Any]) -> None:
        labels = body["labels"] if "labels" in body else [body]
        now = time.time()
        self.server.events.write(
            [
                {
                    "model": self.server.model_name,
                    "id": str(x["id"]),
                    "ts": x.get("ts", now),
                    "label": x["label"],
                }
                for x in labels
            ]
        )
        self._reply(200, {"labels": len(labels)})


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def make_server(
    serving: Path,
    events: Path,
    *,
    model: str = "credit",
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
) -> ModelServer:
    """A server on ``host:port`` (port 0: any free port), with the served model loaded if the
    serving directory has one. ``token``: the bearer token POST requests must carry."""
    holder = ModelHolder(serving)
    try:
        holder.reload()
    except (OSError, pickle.UnpicklingError) as e:
        log.warning("no model to serve yet (%s); POST /reload once driftwarden deployed one", e)
    return ModelServer((host, port), holder, EventLog(events), model, token)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m driftwarden.examples.credit.server", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--serving", type=Path, required=True, help="driftwarden's serving directory for the model")
    parser.add_argument("--events", type=Path, required=True, help="JSONL file the events are appended to")
    parser.add_argument("--model", default="credit", help="model name in the events")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    token = os.environ.get(TOKEN_ENV) or None
    server = make_server(args.serving, args.events, model=args.model, host=args.host, port=args.port, token=token)
    print(f"serving {args.model} on {server.url}", flush=True)  # the first line: tests read the port
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
