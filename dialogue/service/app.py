"""The FastAPI service: ``create_app(settings)`` builds it; the lifespan loads the policy once.

The routes (``dialogue.service.routes``) are thin: they authenticate the client
(``dialogue.service.deps``) and call the service layer (``dialogue.service.conversations.Runtime``),
which owns the transactions. Nothing about a conversation lives in memory between requests.
Errors have one shape (``dialogue.service.errors``). The OpenAPI document carries the limits of
the settings (text length, acts a turn) and the domains the loaded policy serves, so that what it
calls valid the service accepts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
import torch
from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import CollectorRegistry, Counter, Histogram

from dialogue.service import errors
from dialogue.service.conversations import Runtime, create_key, hash_key
from dialogue.service.routes import analytics, conversations, meta
from dialogue.service.settings import Settings
from metarl_core.inference import Agent

__all__ = ["create_app", "create_key", "hash_key"]


def create_app(settings: Settings | None = None, agent: Agent | None = None, runtime: Runtime | None = None) -> FastAPI:
    """The service; ``agent`` overrides loading ``settings.model_path`` (tests); ``runtime``: one
    already opened (``segdial serve`` opens it first, to report a failure in one line)."""
    settings = settings or Settings()
    opened = runtime

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        torch.set_num_threads(settings.torch_threads)
        # Sync routes run in this many threads. The default (40) on a 2-core machine only adds
        # GIL and lock contention; a few threads keep the cores busy while one waits on the database.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads
        runtime = opened or Runtime.open(settings, agent)
        app.state.runtime = runtime
        app.state.settings = settings
        registry = CollectorRegistry()
        app.state.registry = registry
        app.state.metrics = {
            "turns": Counter("segdial_turns", "Turns served", registry=registry),
            "conversations": Counter("segdial_conversations", "Conversations started", registry=registry),
            "guarded": Counter(
                "segdial_guarded_replies", "Replies where the guard replaced a third repeat", registry=registry
            ),
            "handovers": Counter("segdial_handovers", "Replies that asked for a person", registry=registry),
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
        dependencies=[Depends(errors.no_unknown_query)],
        description="A segment-adaptive dialogue policy: send user turns, get system acts and segment read-outs.",
    )
    for router in (conversations.router, analytics.router, meta.router):
        app.include_router(router)
    errors.install(app)
    app.add_middleware(errors.BodySizeLimit, limit=settings.max_body_bytes)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            runtime = getattr(app.state, "runtime", None)
            app.openapi_schema = with_limits(spec, settings, runtime.served_domains() if runtime else None)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def with_limits(spec: dict[str, Any], settings: Settings, domains: list[str] | None) -> dict[str, Any]:
    """``spec`` with the limits of ``settings`` and the served ``domains`` in the request schemas."""
    schemas = spec["components"]["schemas"]
    turn = schemas["TurnIn"]["properties"]
    turn["acts"]["maxItems"] = settings.max_acts
    text = next(s for s in turn["text"]["anyOf"] if s.get("type") == "string")
    text["maxLength"] = settings.max_text_chars
    if domains:
        schemas["ConversationIn"]["properties"]["domain"]["enum"] = domains
    if settings.metrics_public:  # the key is not needed: do not document it as required
        spec["paths"]["/metrics"]["get"].pop("security", None)
        spec["paths"]["/metrics"]["get"]["responses"].pop("401", None)
    return spec
