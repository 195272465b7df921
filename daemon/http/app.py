"""The FastAPI application: probes, ``/metrics``, the read-only JSON API and the status page.

Every handler reads the latest published snapshot once (never the loop's live objects), or the
store and the registry, which are safe to read from another thread. ``/evidence/<file>`` serves
the Evidently reports behind drift alerts (only names of reports the daemon made, from its
``evidence/`` folder), listed by ``/api/v1/evidence``. Admin endpoints: daemon/http/admin.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar

from driftwarden.daemon.alerting.evidence import report_path, reports
from driftwarden.daemon.http import probes
from driftwarden.daemon.http.metrics import metrics_registry
from driftwarden.daemon.http.schemas import (
    ActionDetail,
    ActionOut,
    AuditEntry,
    DecisionOut,
    EvidenceOut,
    ModelOut,
    ModelSummary,
    MonitorOut,
    Page,
    Point,
    Probe,
    RuleOut,
    Status,
    Step,
    VersionOut,
    plain,
)
from driftwarden.daemon.http.snapshot import ModelView, Publisher, Snapshot
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

DEFAULT_LIMIT = 100
"""Items per page unless asked."""

MAX_LIMIT = 1000
"""Largest page: a monitor's whole history (500 points) fits in one."""

T = TypeVar("T")


@dataclass
class Face:
    """What the HTTP face reads: the published snapshot, the store, the registry; and, for admin
    calls, the loop's command queue (daemon/http/control.py)."""

    publisher: Publisher
    store: Any
    registry: Any
    commands: Any = None
    policies: Callable[[], Mapping[str, Any]] = dict
    """The running policies by model (admin calls check names against them)."""
    token: str | None = None
    admin: bool = True
    """Serve the admin endpoints (off on a non-loopback address without a token)."""
    clock: Callable[[], float] = time.time
    evidence: Path | None = None
    """The folder of the Evidently reports behind drift alerts (daemon/alerting/evidence.py)."""


def create_app(face: Face) -> FastAPI:
    app = FastAPI(
        title="driftwarden",
        version=_version(),
        description="A running driftwarden daemon: its monitors, rules, decisions, actions and models.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # Swagger UI loads from a CDN; the status page works offline
        redoc_url=None,
    )
    registry = metrics_registry(lambda: face.publisher.latest)

    def snap() -> Snapshot:
        s = face.publisher.latest
        if s is None:
            raise HTTPException(503, "the daemon has not published its state yet")
        return s

    def model_view(model: str) -> ModelView:
        view = snap().models.get(model)
        if view is None:
            raise HTTPException(404, f"no model {model!r}")
        return view

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/livez", response_model=Probe, responses={503: {"model": Probe}}, tags=["probes"])
    def livez() -> JSONResponse:
        ok, reason = probes.live(face.publisher.latest, face.clock())
        return JSONResponse({"ok": ok, "reason": reason}, status_code=200 if ok else 503)

    @app.get("/readyz", response_model=Probe, responses={503: {"model": Probe}}, tags=["probes"])
    def readyz() -> JSONResponse:
        ok, reason = probes.ready(face.publisher.latest)
        return JSONResponse({"ok": ok, "reason": reason}, status_code=200 if ok else 503)

    @app.get("/api/v1/status", response_model=Status, tags=["status"])
    def status() -> Status:
        s = snap()
        ok, why = probes.ready(s)
        return Status(
            version=_version(),
            uptime_seconds=face.clock() - s.started_at,
            started_at=s.started_at,
            published_at=s.published_at,
            ready=ok,
            ready_reason=why,
            records=s.records,
            events=s.events,
            dead_letters=dict(s.dead_letters),
            unrouted=s.unrouted,
            labels_joined=s.labels_joined,
            next_index=s.next_index,
            positions=dict(s.positions),
            lag=dict(s.lag),
            owned_partitions=list(s.owned),
            checkpoints=s.checkpoints,
            last_checkpoint_at=s.last_checkpoint_at,
            running_actions=s.running_actions,
            paused=s.paused,
            models=[
                ModelSummary(
                    name=m.name,
                    policy=m.policy,
                    champion=m.champion,
                    events=m.events,
                    monitors=list(m.monitors),
                    rules=list(m.rules),
                )
                for m in s.models.values()
            ],
        )

    @app.get("/api/v1/models", response_model=Page[ModelOut], tags=["models"])
    def models(offset: int = Query(0, ge=0), limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)) -> Any:
        views = sorted(snap().models.values(), key=lambda m: m.name)
        return _page([_model_out(v) for v in views], offset, limit)

    @app.get("/api/v1/models/{model}", response_model=ModelOut, tags=["models"])
    def model(model: str) -> ModelOut:
        return _model_out(model_view(model))

    @app.get(
        "/api/v1/models/{model}/monitors/{monitor}/history",
        response_model=Page[Point],
        tags=["models"],
        summary="A monitor's signals (value, threshold, drift), oldest first; bounded in memory",
    )
    def history(
        model: str,
        monitor: str,
        offset: int = Query(0, ge=0),
        limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    ) -> Any:
        view = model_view(model).monitors.get(monitor)
        if view is None:
            raise HTTPException(404, f"model {model!r} has no monitor {monitor!r}")
        points = [
            Point(at=p.at, ts=p.ts, value=plain(p.value), threshold=plain(p.threshold), drift=p.drift)
            for p in view.history
        ]
        return _page(points, offset, limit)

    @app.get("/api/v1/decisions", response_model=Page[DecisionOut], tags=["decisions"])
    def decisions(
        model: str | None = None,
        offset: int = Query(0, ge=0),
        limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    ) -> Any:
        rows = [d for d in snap().decisions if model is None or d.get("model") == model]
        return _page([DecisionOut.model_validate(_decision(d)) for d in rows], offset, limit)

    @app.get("/api/v1/actions", response_model=Page[ActionOut], tags=["actions"])
    def actions(
        model: str | None = None,
        offset: int = Query(0, ge=0),
        limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    ) -> Any:
        rows = face.store.actions(model=model)
        return _page([ActionOut.model_validate(plain(r.as_dict())) for r in rows], offset, limit)

    @app.get("/api/v1/actions/{key:path}", response_model=ActionDetail, tags=["actions"])
    def action(key: str) -> ActionDetail:
        row = face.store.action(key)
        if row is None:
            raise HTTPException(404, f"no action {key!r}")
        steps = [
            Step(
                seq=e["seq"],
                wall=e["wall"],
                type=e["type"],
                state=e.get("state"),
                detail=plain({k: v for k, v in e.items() if k not in ("seq", "wall", "type", "model", "key")}),
            )
            for e in face.store.audit(model=row.model, key=key)
        ]
        return ActionDetail.model_validate({**plain(row.as_dict()), "steps": steps})

    @app.get("/api/v1/audit", response_model=Page[AuditEntry], tags=["actions"])
    def audit(
        model: str | None = None,
        offset: int = Query(0, ge=0),
        limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    ) -> Any:
        rows = face.store.audit(model=model, limit=offset + limit)
        newest_first = list(reversed(rows))
        entries = [
            AuditEntry(
                seq=e["seq"],
                wall=e["wall"],
                model=e["model"],
                type=e["type"],
                key=e["key"],
                detail=plain({k: v for k, v in e.items() if k not in ("seq", "wall", "type", "model", "key")}),
            )
            for e in newest_first[offset:]
        ]
        return Page[AuditEntry](items=entries, total=len(newest_first), offset=offset, limit=limit)

    @app.get("/api/v1/models/{model}/versions", response_model=Page[VersionOut], tags=["models"])
    def versions(
        model: str,
        offset: int = Query(0, ge=0),
        limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    ) -> Any:
        model_view(model)
        aliases = face.registry.aliases(model)
        rows = [
            VersionOut(
                model=model,
                version=v.version,
                aliases=sorted(a for a, ver in aliases.items() if ver == v.version),
                created=v.metadata.get("created"),
                parent=v.metadata.get("parent"),
                decision=v.metadata.get("decision"),
                metrics=plain(v.metadata.get("metrics")),
            )
            for v in face.registry.versions(model)
        ]
        return _page(rows, offset, limit)

    if face.admin:
        from driftwarden.daemon.http.admin import admin_router

        app.include_router(admin_router(face))

    static = files("driftwarden.daemon.http") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/api/v1/evidence", response_model=Page[EvidenceOut], tags=["alerts"])
    def evidence(
        model: str | None = None,
        offset: int = Query(0, ge=0),
        limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    ) -> Any:
        """The Evidently reports of drift alerts (each report complete), oldest first."""
        items = []
        for e in reports(face.evidence, model) if face.evidence is not None else []:
            try:
                items.append(EvidenceOut.model_validate({**e, "url": f"evidence/{e['file']}"}))
            except ValidationError:  # a sidecar this version did not write: left out, never a 500
                continue
        return _page(items, offset, limit)

    @app.get("/evidence/{name}", include_in_schema=False)
    def evidence_report(name: str) -> FileResponse:
        path = report_path(face.evidence, name) if face.evidence is not None else None
        if path is None:
            raise HTTPException(404, f"no evidence report {name!r}")
        return FileResponse(str(path), media_type="text/html")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(str(static / "index.html"), media_type="text/html")

    return app


def _page(items: Sequence[T], offset: int, limit: int) -> dict[str, Any]:
    return {"items": list(items[offset : offset + limit]), "total": len(items), "offset": offset, "limit": limit}


def _model_out(m: ModelView) -> ModelOut:
    return ModelOut(
        name=m.name,
        policy=m.policy,
        digest=m.digest,
        champion=m.champion,
        events=m.events,
        labels_joined=m.labels_joined,
        pending=dict(m.pending),
        expired=dict(m.expired),
        monitors=[
            MonitorOut(
                name=v.name,
                kind=v.kind,
                latest=plain(v.latest),
                signals=v.signals,
                points=len(v.history),
                window_fill=v.fill,
                last_signal_at=v.last_signal_at,
            )
            for v in m.monitors.values()
        ],
        rules=[
            RuleOut(name=r.name, action=r.action, state=r.state, decisions=r.decisions, silenced_until=r.silenced_until)
            for r in m.rules.values()
        ],
    )


def _decision(d: Any) -> dict[str, Any]:
    return plain({k: d.get(k) for k in DecisionOut.model_fields} | {"reason": d.get("reason") or ""})


def _version() -> str:
    try:
        return version("driftwarden")
    except PackageNotFoundError:
        return "unknown"
