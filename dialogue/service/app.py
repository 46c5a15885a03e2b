"""The FastAPI service: ``create_app(settings)`` builds it; the lifespan loads the policy once.

The routes are thin: they authenticate the client and call the service layer
(``dialogue.service.conversations.Runtime``), which owns the transactions. Nothing about a
conversation lives in memory between requests.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio.to_thread
import torch
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response, Security
from fastapi.security import APIKeyHeader
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from sqlalchemy import text

from dialogue.service import db
from dialogue.service.conversations import Runtime, ServiceError, TurnResult, create_key, hash_key
from dialogue.service.schemas import ConversationIn, EndIn, ReplyOut, TurnIn
from dialogue.service.settings import Settings
from metarl_core.inference import Agent

__all__ = ["create_app", "create_key", "hash_key"]

# -- dependencies ------------------------------------------------------------------------------
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key from `segdial keys create`")


async def get_runtime(request: Request) -> Runtime:  # async: no trip to the thread pool
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_client(runtime: RuntimeDep, key: Annotated[str | None, Security(api_key_header)]) -> int:
    """The calling client's id (looked up on every request, so a revoked key stops at once)."""
    if not key:
        raise HTTPException(401, "missing API key: send it in the X-API-Key header")
    client_id = runtime.client_of(key)
    if client_id is None:
        raise HTTPException(401, "invalid API key")
    return client_id


ClientDep = Annotated[int, Depends(get_client)]


def served(call: Callable[[], Any]) -> Any:
    """Run a service-layer call, turning its refusals into HTTP errors."""
    try:
        return call()
    except ServiceError as e:
        raise HTTPException(e.status, e.message) from e


# -- routes ------------------------------------------------------------------------------------
conversations = APIRouter(prefix="/v1/conversations", tags=["conversations"])


@conversations.post("", status_code=201)
def create_conversation(
    body: ConversationIn, client: ClientDep, runtime: RuntimeDep, request: Request
) -> dict[str, str]:
    """Start a conversation; returns its id."""
    conversation_id = served(lambda: runtime.start_conversation(client, body.domain, body.client_user_ref))
    request.app.state.metrics["conversations"].inc()
    return {"id": conversation_id}


@conversations.post("/{conversation_id}/turns", response_model=ReplyOut)
def post_turn(conversation_id: str, body: TurnIn, client: ClientDep, runtime: RuntimeDep, request: Request) -> Response:
    """One user turn (text, structured acts, or both) -> the system's reply and the segment read-out.

    Structured acts bypass the NLU; text alone goes through it. The text is stored either way.
    A retried request with the same ``idempotency_key`` returns the stored reply.
    """
    started = time.perf_counter()
    result: TurnResult = served(lambda: runtime.user_turn(client, conversation_id, body))
    if not result.replayed:
        request.app.state.metrics["turns"].inc()
        request.app.state.metrics["latency"].observe(time.perf_counter() - started)
    # The reply is already validated: send its JSON as it is rather than validating it again.
    return Response(result.reply.model_dump_json(), media_type="application/json")


@conversations.get("/{conversation_id}")
def get_conversation(conversation_id: str, client: ClientDep, runtime: RuntimeDep) -> dict[str, Any]:
    """The whole conversation with its turns."""
    return dict(served(lambda: runtime.conversation(client, conversation_id)))


@conversations.post("/{conversation_id}/end")
def end_conversation(conversation_id: str, body: EndIn, client: ClientDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Record the outcome (and an optional 1-5 rating) of a conversation."""
    return dict(served(lambda: runtime.end_conversation(client, conversation_id, body.outcome, body.rating)))


meta = APIRouter(tags=["service"])


@meta.get("/v1/policy")
def policy_card(runtime: RuntimeDep, client: ClientDep) -> dict[str, Any]:
    """The loaded checkpoint's card (without its training history)."""
    card = runtime.agent.card.to_json() if runtime.agent.card else {}
    card.get("training", {}).pop("history", None)
    return card


@meta.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@meta.get("/readyz")
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


@meta.get("/metrics")
def metrics(request: Request) -> Response:
    """Prometheus metrics."""
    return Response(generate_latest(request.app.state.registry), media_type="text/plain; version=0.0.4")


def create_app(settings: Settings | None = None, agent: Agent | None = None) -> FastAPI:
    """The service; ``agent`` overrides loading ``settings.model_path`` (tests)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        torch.set_num_threads(settings.torch_threads)
        # Sync routes run in this many threads. The default (40) on a 2-core machine only adds
        # GIL and lock contention; a few threads keep the cores busy while one waits on the database.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads
        runtime = Runtime.open(settings, agent)
        app.state.runtime = runtime
        app.state.settings = settings
        registry = CollectorRegistry()
        app.state.registry = registry
        app.state.metrics = {
            "turns": Counter("segdial_turns", "Turns served", registry=registry),
            "conversations": Counter("segdial_conversations", "Conversations started", registry=registry),
            "latency": Histogram(
                "segdial_turn_latency_seconds",
                "Turn latency",
                registry=registry,
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            ),
        }
        yield
        runtime.close()

    app = FastAPI(
        title="segdial",
        version="0.1.0",
        lifespan=lifespan,
        description="A segment-adaptive dialogue policy: send user turns, get system acts and segment read-outs.",
    )
    app.include_router(conversations)
    app.include_router(meta)
    from dialogue.service.analytics_api import router as analytics  # it imports this module's dependencies

    app.include_router(analytics)
    return app
