"""Dependencies of the routes: the process's ``Runtime`` and the calling client (``Annotated`` aliases)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from dialogue.service.conversations import Runtime, ServiceError

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
