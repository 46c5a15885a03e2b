"""``/v1/conversations``: start a conversation, post user turns, read it back, end it, find a user's."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from dialogue.service.conversations import TurnResult
from dialogue.service.deps import ClientDep, RuntimeDep, served
from dialogue.service.errors import responses
from dialogue.service.schemas import NO_NUL, ConversationIn, EndIn, ReplyOut, TurnIn

router = APIRouter(prefix="/v1/conversations", tags=["conversations"], responses=responses(401, 413, 422))


@router.post("", status_code=201)
def create_conversation(
    body: ConversationIn, client: ClientDep, runtime: RuntimeDep, request: Request
) -> dict[str, str]:
    """Start a conversation; returns its id."""
    conversation_id = served(lambda: runtime.start_conversation(client.id(), body.domain, body.client_user_ref))
    request.app.state.metrics["conversations"].inc()
    return {"id": conversation_id}


@router.get("")
def list_conversations(
    client: ClientDep,
    runtime: RuntimeDep,
    client_user_ref: Annotated[str, Query(max_length=200, pattern=NO_NUL, description="The client's user reference")],
    open_only: Annotated[bool, Query(alias="open", description="Only conversations that have not ended")] = False,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, list[dict[str, Any]]]:
    """A user's conversations (by the ``client_user_ref`` given when they started), newest first."""
    return {"conversations": runtime.conversations_of(client.id(), client_user_ref, open_only=open_only, limit=limit)}


@router.post("/{conversation_id}/turns", response_model=ReplyOut, responses=responses(404, 409))
def post_turn(conversation_id: str, body: TurnIn, client: ClientDep, runtime: RuntimeDep, request: Request) -> Response:
    """One user turn (text, structured acts, or both) -> the system's reply and the segment read-out.

    Structured acts bypass the NLU; text alone goes through it. The text is stored either way.
    A retried request with the same ``idempotency_key`` and body returns the stored reply; the same
    key with another body gets 422. The last turn the conversation may have (``SEGDIAL_MAX_TURNS``)
    ends it with a handover; a turn after the end gets 409.
    """
    started = time.perf_counter()
    result: TurnResult = served(lambda: runtime.user_turn(client.id(), conversation_id, body))
    if not result.replayed:
        request.app.state.metrics["turns"].inc()
        request.app.state.metrics["latency"].observe(time.perf_counter() - started)
        if result.reply.guarded:
            request.app.state.metrics["guarded"].inc()
        if result.reply.handover:
            request.app.state.metrics["handovers"].inc()
    # The reply is already validated: send its JSON as it is rather than validating it again.
    return Response(result.reply.model_dump_json(), media_type="application/json")


@router.get("/{conversation_id}", responses=responses(404))
def get_conversation(conversation_id: str, client: ClientDep, runtime: RuntimeDep) -> dict[str, Any]:
    """The whole conversation with its turns."""
    return dict(served(lambda: runtime.conversation(client.id(), conversation_id)))


@router.post("/{conversation_id}/end", responses=responses(404, 409))
def end_conversation(conversation_id: str, body: EndIn, client: ClientDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Record the outcome (and an optional 1-5 rating) of a conversation."""
    return dict(served(lambda: runtime.end_conversation(client.id(), conversation_id, body.outcome, body.rating)))
