"""Probes and admin endpoints of a real daemon process: /readyz follows the source, admin calls need
the token (401) and answer 202, and a retrain started through the API walks the whole lifecycle."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from .conftest import RunningDaemon, events, start_daemon

TOKEN = "t0ken-for-tests"
LIFECYCLE_TIMEOUT = 180.0
"""Seconds for a retrain (a trainer subprocess importing scikit-learn on a loaded machine) to end."""


@pytest.fixture
def guarded(tmp_path: Path):  # type: ignore[no-untyped-def]
    d = start_daemon(tmp_path, env={"DRIFTWARDEN_TOKEN": TOKEN})
    try:
        yield d
    finally:
        d.stop()


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post(d: RunningDaemon, path: str, token: str | None = TOKEN, **kw: object) -> httpx.Response:
    headers = {**(auth(token) if token else {}), **kw.pop("headers", {})}  # type: ignore[dict-item]
    return httpx.post(d.url + path, headers=headers, timeout=60, **kw)  # type: ignore[arg-type]


def test_readyz_follows_the_source(daemon: RunningDaemon) -> None:
    daemon.append(events(100))
    daemon.wait_for(lambda: daemon.get("/readyz").status_code == 200, what="ready")
    assert daemon.get("/livez").json() == {"ok": True, "reason": "the loop turns"}
    moved = daemon.events.with_name("away.jsonl")
    daemon.events.rename(moved)
    r = daemon.wait_for(lambda: (r := daemon.get("/readyz")).status_code == 503 and r, what="unready")
    assert r.json() == {"ok": False, "reason": "the source is unreachable"}  # type: ignore[union-attr]
    assert daemon.get("/livez").status_code == 200  # not stuck: a restart would not help
    moved.rename(daemon.events)
    daemon.wait_for(lambda: daemon.get("/readyz").status_code == 200, what="ready again")


def test_admin_needs_the_token_and_every_call_is_audited(guarded: RunningDaemon) -> None:
    d = guarded
    d.append(events(50))
    d.wait_for(lambda: d.get("/readyz").status_code == 200, what="ready")
    for token in (None, "wrong"):
        r = post(d, "/api/v1/models/shop/retrain", token=token, json={})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert post(d, "/api/v1/policies/reload", token=None).status_code == 401
    r = post(d, "/api/v1/models/shop/rules/degraded/silence", json={"seconds": 600, "reason": "maintenance"})
    assert r.status_code == 200 and r.json()["detail"]["until"] > time.time() + 500
    assert post(d, "/api/v1/models/nope/retrain", json={}).status_code == 404
    assert post(d, "/api/v1/models/shop/rules/nope/silence", json={"seconds": 5}).status_code == 404
    rules = {r["name"]: r for r in d.get("/api/v1/models/shop").json()["rules"]}
    d.wait_for(lambda: d.get("/api/v1/models/shop").json()["rules"][0]["silenced_until"], what="silence shown")
    assert rules["unfair"]["silenced_until"] is None
    # a silenced rule still decides, but its decision is recorded as a dry run: nothing is executed
    d.append(events(600, start=50, wrong=0.6))
    decided = d.wait_for(
        lambda: [
            x for x in d.get("/api/v1/decisions", params={"model": "shop"}).json()["items"] if x["rule"] == "degraded"
        ],
        what="a decision of the silenced rule",
    )
    assert decided[0]["dry_run"] is True and "silenced" in decided[0]["reason"]  # type: ignore[index]
    audit = d.get("/api/v1/audit", params={"limit": 1000}).json()["items"]
    admin = [e for e in audit if e["type"] == "admin"]
    assert {e["detail"]["path"] for e in admin} == {"/api/v1/models/shop/rules/degraded/silence"}
    assert all(e["detail"]["caller"] == "127.0.0.1" for e in admin)
    assert 'driftwarden_rule_silenced{model="shop",rule="degraded"} 1.0' in d.get("/metrics").text


def _action(d: RunningDaemon, key: str) -> dict:
    return d.get(f"/api/v1/actions/{key}").json()  # type: ignore[no-any-return]


def _walk(d: RunningDaemon, key: str, start: int) -> dict:
    """Feed live labeled traffic until the action ``key`` is verified (the verify window needs it)."""
    deadline = time.monotonic() + LIFECYCLE_TIMEOUT
    fed = start
    while time.monotonic() < deadline:
        state = _action(d, key).get("state")
        if state in ("verified", "rolled_back", "failed", "rejected"):
            return _action(d, key)
        if state in ("deployed", "verifying"):
            d.append(events(40, start=fed))
            fed += 40
        time.sleep(0.5)
    raise AssertionError(f"{key} did not finish: {_action(d, key)}\n{d.log()}")


def test_a_retrain_started_through_the_api_walks_the_whole_lifecycle(guarded: RunningDaemon) -> None:
    d = guarded
    d.append(events(700))
    d.wait_for(lambda: d.get("/api/v1/models/shop").json()["labels_joined"] >= 700, what="labeled data")
    r = post(d, "/api/v1/models/shop/retrain", json={"reason": "new data"}, headers={"Idempotency-Key": "first"})
    assert r.status_code == 202, r.text
    key = r.json()["key"]
    assert key == "shop/manual/first" and r.json()["location"] == "/api/v1/actions/shop/manual/first"
    again = post(d, "/api/v1/models/shop/retrain", json={}, headers={"Idempotency-Key": "first"})
    assert again.status_code == 202 and again.json()["key"] == key
    done = _walk(d, key, start=700)
    assert done["state"] == "verified", done
    kinds = [s["type"] for s in done["steps"]]
    assert kinds[:2] == ["admin", "decision"], kinds  # the call (with its caller) is audited before the decision
    states = [s["state"] for s in done["steps"] if s["type"] == "action"]
    walked = [s for s in states if s in ("training", "evaluating", "promoted", "deployed", "verifying", "verified")]
    assert list(dict.fromkeys(walked)) == ["training", "evaluating", "promoted", "deployed", "verifying", "verified"]
    assert [a["key"] for a in d.get("/api/v1/actions").json()["items"] if a["rule"] == "manual"] == [key]
    decision = [x for x in d.get("/api/v1/decisions").json()["items"] if x["key"] == key]
    assert decision and decision[0]["reason"].startswith("manual retrain requested by 127.0.0.1")
    versions = d.get("/api/v1/models/shop/versions").json()["items"]
    assert [(v["version"], v["decision"], v["aliases"]) for v in versions] == [("v0001", key, ["champion"])]
    d.wait_for(lambda: 'driftwarden_model_champion_info{model="shop",version="v0001"}' in d.get("/metrics").text)
    assert (d.root / "state" / "serving" / "shop").exists()

    # a second version, then rollback and promote through the API
    second = post(d, "/api/v1/models/shop/retrain", json={}, headers={"Idempotency-Key": "second"}).json()["key"]
    assert _walk(d, second, start=5000)["state"] == "verified"
    r = post(d, "/api/v1/models/shop/rollback", json={"reason": "test"})
    assert r.status_code == 200 and r.json()["ok"], r.text
    aliases = {v["version"]: v["aliases"] for v in d.get("/api/v1/models/shop/versions").json()["items"]}
    assert "champion" in aliases["v0001"]
    r = post(d, "/api/v1/models/shop/promote", json={"version": "v0002"})
    assert r.status_code == 200 and r.json()["detail"]["champion"] == "v0002", r.text
    audit = [e for e in d.get("/api/v1/audit", params={"limit": 1000}).json()["items"] if e["type"] == "admin"]
    assert {e["detail"]["path"].rsplit("/", 1)[1] for e in audit} == {"retrain", "rollback", "promote"}


def test_silences_survive_a_restart_until_they_end(tmp_path: Path) -> None:
    """Issue 15: a silence is stored; a restarted daemon keeps it (same end time) and drops one that ended."""
    env = {"DRIFTWARDEN_TOKEN": TOKEN}
    d = start_daemon(tmp_path, env=env)
    try:
        d.append(events(50))
        d.wait_for(lambda: d.get("/readyz").status_code == 200, what="ready")
        long = post(d, "/api/v1/models/shop/rules/degraded/silence", json={"seconds": 3600}).json()["detail"]
        short = post(d, "/api/v1/models/fraud/rules/score-shift/silence", json={"seconds": 2}).json()["detail"]
    finally:
        assert d.stop() == 0
    time.sleep(max(0.0, short["until"] - time.time()) + 0.1)  # the short one ends while no daemon runs

    again = start_daemon(tmp_path, env=env)
    try:

        def rules(model: str) -> dict[str, dict]:
            return {r["name"]: r for r in again.get(f"/api/v1/models/{model}").json()["rules"]}

        shown = again.wait_for(lambda: rules("shop")["degraded"]["silenced_until"], what="the stored silence")
        assert shown == pytest.approx(long["until"])
        assert rules("fraud")["score-shift"]["silenced_until"] is None
        assert 'driftwarden_rule_silenced{model="shop",rule="degraded"} 1.0' in again.get("/metrics").text
        # and it still mutes: the silenced rule's decision after the restart is a dry run
        again.append(events(600, start=50, wrong=0.6))
        decided = again.wait_for(
            lambda: [
                x
                for x in again.get("/api/v1/decisions", params={"model": "shop"}).json()["items"]
                if x["rule"] == "degraded"
            ],
            what="a decision of the silenced rule",
        )
        assert decided[0]["dry_run"] is True  # type: ignore[index]
    finally:
        again.stop()
