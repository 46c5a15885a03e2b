"""The service's own routes: the policy card, health, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import generate_latest
from sqlalchemy import text

from dialogue.service import db
from dialogue.service.deps import ClientDep, RuntimeDep

router = APIRouter(tags=["service"])


@router.get("/v1/policy")
def policy_card(runtime: RuntimeDep, client: ClientDep) -> dict[str, Any]:
    """The loaded checkpoint's card (without its training history)."""
    client.id()  # only clients may read it
    card = runtime.agent.card.to_json() if runtime.agent.card else {}
    card.get("training", {}).pop("history", None)
    return card


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(runtime: RuntimeDep, response: Response) -> dict[str, str]:
    """The database answers and its schema is current; the policy is loaded."""
    try:
        with runtime.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        db.check_schema(runtime.engine)
    except Exception as e:  # any database problem makes the replica not ready
        response.status_code = 503
        return {"status": "not ready", "reason": str(e)}
    return {"status": "ready"}


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """Prometheus metrics."""
    return Response(generate_latest(request.app.state.registry), media_type="text/plain; version=0.0.4")
