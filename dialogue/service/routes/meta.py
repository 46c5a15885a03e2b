"""The service's own routes: the policy card, health, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, Response, Security
from prometheus_client import generate_latest
from pydantic import BaseModel
from sqlalchemy import text

from dialogue.service import db
from dialogue.service.deps import ClientDep, RuntimeDep, api_key_header
from dialogue.service.errors import one_line, responses

router = APIRouter(tags=["service"])
METRICS_TYPE = "text/plain; version=0.0.4"


class Readiness(BaseModel):
    status: str
    reason: str | None = None


@router.get("/v1/policy", responses=responses(401))
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


@router.get(
    "/readyz",
    response_model=Readiness,
    response_model_exclude_none=True,
    responses={503: {"model": Readiness, "description": "The database or its schema is not ready"}},
)
def readyz(runtime: RuntimeDep, response: Response) -> dict[str, str]:
    """The database answers and its schema is current; the policy is loaded."""
    try:
        with runtime.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        db.check_schema(runtime.engine)
    except Exception as e:  # any database problem makes the replica not ready
        response.status_code = 503
        return {"status": "not ready", "reason": one_line(e)}
    return {"status": "ready"}


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {METRICS_TYPE: {"schema": {"type": "string"}}}, "description": "Prometheus text format"},
        **responses(401),
    },
)
def metrics(
    request: Request, runtime: RuntimeDep, key: Annotated[str | None, Security(api_key_header)] = None
) -> Response:
    """Prometheus metrics; with ``SEGDIAL_METRICS_PUBLIC=false`` only for a client's API key (else 401)."""
    if not runtime.settings.metrics_public and (not key or runtime.client_of(key) is None):
        raise HTTPException(401, "metrics need an API key (SEGDIAL_METRICS_PUBLIC is false): send X-API-Key")
    return Response(generate_latest(request.app.state.registry), media_type=METRICS_TYPE)
