"""The FastAPI service: ``create_app(settings)`` builds it; the lifespan loads the policy once.

The routes (``dialogue.service.routes``) are thin: they authenticate the client
(``dialogue.service.deps``) and call the service layer (``dialogue.service.conversations.Runtime``),
which owns the transactions. Nothing about a conversation lives in memory between requests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
import torch
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram

from dialogue.service.conversations import Runtime, create_key, hash_key
from dialogue.service.routes import analytics, conversations, meta
from dialogue.service.settings import Settings
from metarl_core.inference import Agent

__all__ = ["create_app", "create_key", "hash_key"]


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
        description="A segment-adaptive dialogue policy: send user turns, get system acts and segment read-outs.",
    )
    for router in (conversations.router, analytics.router, meta.router):
        app.include_router(router)
    return app
