"""Admin endpoints: manual retrain, promote, rollback, reload policies, silence a rule.

Behind a bearer token (``Authorization: Bearer <token>``) when one is configured (from
``DRIFTWARDEN_TOKEN`` or a token file, never from the config file), compared in constant time;
401 without it. Without a token they are served on a loopback address only (daemon/http/face.py
decides). Every call that passes the check is written to the audit log, with the caller's address,
before it takes effect.
"""

from __future__ import annotations

import hmac
import logging
import os
import uuid
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any
from urllib.parse import quote

from driftwarden.daemon.http import control
from driftwarden.daemon.http.schemas import (
    Accepted,
    AdminResult,
    PromoteRequest,
    RetrainRequest,
    RollbackRequest,
    SilenceRequest,
)
from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

log = logging.getLogger("driftwarden.http")

TOKEN_ENV = "DRIFTWARDEN_TOKEN"
TOKEN_FILE_ENV = "DRIFTWARDEN_TOKEN_FILE"

COMMAND_TIMEOUT = 30.0
"""Seconds an admin call waits for the loop to run it: longer than the slowest batch plus checkpoint."""


def read_token(token_file: str | Path | None = None) -> str | None:
    """The admin token: ``$DRIFTWARDEN_TOKEN``, else the first line of ``$DRIFTWARDEN_TOKEN_FILE``
    or of ``token_file``; None when none is set.

    >>> import os; os.environ["DRIFTWARDEN_TOKEN"] = "s3cret"; read_token()
    's3cret'
    >>> del os.environ["DRIFTWARDEN_TOKEN"]
    """
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    path = os.environ.get(TOKEN_FILE_ENV) or token_file
    if path:
        lines = Path(path).read_text().splitlines()
        token = lines[0].strip() if lines else ""
        if not token:
            raise ValueError(f"token file {path} is empty")
        return token
    return None


def admin_router(face: Any) -> APIRouter:
    """The admin routes over ``face`` (dependencies as defaults: the closures are not importable names)."""
    bearer = HTTPBearer(auto_error=False)

    def caller(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
        address = request.client.host if request.client is not None else "unknown"
        if face.token is not None:
            given = credentials.credentials if credentials is not None else ""
            if not hmac.compare_digest(given.encode(), face.token.encode()):
                log.warning(
                    "admin call %s %s from %s refused: bad or missing token", request.method, request.url.path, address
                )
                raise HTTPException(401, "a valid bearer token is needed", headers={"WWW-Authenticate": "Bearer"})
        return address

    router = APIRouter(prefix="/api/v1", tags=["admin"])

    def audit(request: Request, address: str, model: str | None, key: str | None, body: dict[str, Any]) -> None:
        face.store.record(
            model, "admin", key, {"caller": address, "method": request.method, "path": request.url.path, **body}
        )

    def run(command: control.Command) -> Any:
        future = face.commands.submit(command)
        try:
            return future.result(COMMAND_TIMEOUT)
        except FutureTimeout:
            raise HTTPException(504, f"the loop did not run the command within {COMMAND_TIMEOUT:.0f} s") from None
        except LookupError as e:
            raise HTTPException(404, str(e.args[0] if e.args else e)) from None
        except (ValueError, KeyError) as e:
            raise HTTPException(409, str(e)) from None

    def policy_of(model: str) -> Any:
        snap = face.publisher.latest
        if snap is None or model not in snap.models:
            raise HTTPException(404, f"no model {model!r}")
        return face.policies()[model]

    @router.post("/models/{model}/retrain", status_code=202, response_model=Accepted)
    def retrain(
        model: str,
        request: Request,
        address: str = Depends(caller),
        body: RetrainRequest | None = None,
        idempotency_key: str | None = Header(None, description="The same key twice starts one retrain."),
    ) -> Accepted:
        """Retrain now: a decision with a manual reason, run through the usual lifecycle (train → gate
        → deploy → verify). Answers 202 at once; follow the action at ``location``."""
        body = body or RetrainRequest()
        try:
            action = control.retrain_action(policy_of(model), body.action)
        except LookupError as e:
            raise HTTPException(404, str(e)) from None
        suffix = idempotency_key or uuid.uuid4().hex[:12]
        key = f"{model}/{control.MANUAL_RULE}/{suffix}"
        audit(request, address, model, key, {"action": action, "reason": body.reason})
        state = run(control.manual_retrain(model, action, key, address, body.reason))
        return Accepted(key=key, location=f"/api/v1/actions/{quote(key)}", state=state)

    @router.post("/models/{model}/promote", response_model=AdminResult)
    def promote(model: str, body: PromoteRequest, request: Request, address: str = Depends(caller)) -> AdminResult:
        """Make a version the champion (deploying it where the policy deploys)."""
        policy_of(model)
        audit(request, address, model, None, {"version": body.version})
        return AdminResult(ok=True, detail=run(control.promote(model, body.version)))

    @router.post("/models/{model}/rollback", response_model=AdminResult)
    def rollback(
        model: str, request: Request, address: str = Depends(caller), body: RollbackRequest | None = None
    ) -> AdminResult:
        """Go back to the previous champion."""
        body = body or RollbackRequest()
        policy_of(model)
        audit(request, address, model, None, {"reason": body.reason})
        detail = run(control.roll_back(model, f"{body.reason} (by {address})"))
        return AdminResult(ok=detail.get("state") == "rolled_back", detail=detail)

    @router.post("/policies/reload", response_model=AdminResult)
    def reload(request: Request, address: str = Depends(caller)) -> AdminResult:
        """Load the policy files again now (they are also watched); refused files keep the running policy."""
        audit(request, address, None, None, {})
        return AdminResult(ok=True, detail=run(control.reload_policies()))

    @router.post("/models/{model}/rules/{rule}/silence", response_model=AdminResult)
    def silence(
        model: str, rule: str, body: SilenceRequest, request: Request, address: str = Depends(caller)
    ) -> AdminResult:
        """Silence a rule for a while: its decisions are recorded as dry runs; nothing is executed."""
        policy = policy_of(model)
        if rule not in {r.name for r in policy.spec.rules}:
            raise HTTPException(404, f"model {model!r} has no rule {rule!r}")
        audit(request, address, model, None, {"rule": rule, "seconds": body.seconds, "reason": body.reason})
        return AdminResult(ok=True, detail=run(control.silence(model, rule, body.seconds)))

    return router
