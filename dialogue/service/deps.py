"""Dependencies of the routes: the process's ``Runtime`` and the calling client (``Annotated`` aliases).

The API key is looked up on every request (so a revoked key stops at once), in the route's own
worker thread: the dependencies here are async and do no I/O, so a request makes one trip to the
thread pool rather than one for the key and one for the route. A missing key is refused before the
body is read; an unknown or revoked key when the route asks for ``client.id()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from dialogue.service.conversations import Runtime, ServiceError

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key from `segdial keys create`")


async def get_runtime(request: Request) -> Runtime:  # async: no trip to the thread pool
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


@dataclass(frozen=True)
class Client:
    """The caller, known by its API key until ``id()`` looks the key up."""

    runtime: Runtime
    key: str

    def id(self) -> int:
        """The client id of the key (blocking: call it from the route's thread); 401 when unknown or revoked."""
        client_id = self.runtime.client_of(self.key)
        if client_id is None:
            raise HTTPException(401, "invalid API key")
        return client_id


async def get_client(runtime: RuntimeDep, key: Annotated[str | None, Security(api_key_header)]) -> Client:
    if not key:
        raise HTTPException(401, "missing API key: send it in the X-API-Key header")
    return Client(runtime, key)


ClientDep = Annotated[Client, Depends(get_client)]


def served(call: Callable[[], Any]) -> Any:
    """Run a service-layer call, turning its refusals into HTTP errors."""
    try:
        return call()
    except ServiceError as e:
        raise HTTPException(e.status, e.message) from e
