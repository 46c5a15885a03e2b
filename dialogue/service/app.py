"""The FastAPI service: ``create_app(settings)`` builds it; the lifespan loads the policy once.

Every turn runs in one transaction: it locks the conversation row, replays a stored reply for a
retried idempotency key, applies the turn to the stored state and writes the new state and the
turn back. Nothing about a conversation lives in memory between requests.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import torch
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response, Security
from fastapi.security import APIKeyHeader
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from dialogue.domain import DomainError, available_domains, load_domain
from dialogue.nlu import NLU
from dialogue.service import db
from dialogue.service.settings import Settings
from dialogue.service.turns import TurnError, new_state, parse_acts, take_turn
from dialogue.tracker import ObservationLayout
from metarl_core.inference import Agent

KEY_PREFIX = "sdk_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, name: str) -> str:
    """Store a new API key (hashed) and return it; it is never shown again."""
    key = KEY_PREFIX + secrets.token_urlsafe(24)
    session.add(db.ApiKey(name=name, key_hash=hash_key(key)))
    session.commit()
    return key


# -- request and response bodies ---------------------------------------------------------------
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL characters: reject them as bad input


class UserActIn(BaseModel):
    act: str = Field(description="User act type: inform, request, affirm, negate, dont_know, book, relax, bye, ...")
    slot: str | None = Field(
        default=None, description="Slot of the act (informable, requestable or booking)", pattern=NO_NUL
    )
    value: str | None = Field(default=None, description="Value of an informed slot", pattern=NO_NUL)
    confidence: float = Field(default=1.0, ge=0.0, le=1.0, description="NLU confidence of the value")


class ConversationIn(BaseModel):
    client_user_ref: str | None = Field(default=None, max_length=200, pattern=NO_NUL)
    domain: str = "restaurant"


class TurnIn(BaseModel):
    text: str | None = Field(
        default=None, description="The user's utterance; read by the NLU when no acts are sent", pattern=NO_NUL
    )
    acts: list[UserActIn] = Field(default_factory=list, description="Structured user acts (bypass the NLU)")
    idempotency_key: str | None = Field(default=None, max_length=200, pattern=NO_NUL)


class EndIn(BaseModel):
    outcome: str = Field(pattern="^(success|failure|abandoned)$")
    rating: int | None = Field(default=None, ge=1, le=5)


class ReplyOut(BaseModel):
    conversation_id: str
    turn_index: int
    system_act: str
    system_slot: str | None
    system_text: str
    segment: str | None
    confidence: float | None
    segment_probabilities: dict[str, float]
    posterior_mean: list[float]
    posterior_variance: list[float]
    ended: bool


# -- dependencies ------------------------------------------------------------------------------
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key from `segdial keys create`")


def get_session(request: Request) -> Any:
    factory: sessionmaker = request.app.state.sessions
    with factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_client(session: SessionDep, key: Annotated[str | None, Security(api_key_header)]) -> db.ApiKey:
    if not key:
        raise HTTPException(401, "missing API key: send it in the X-API-Key header")
    row = session.scalar(select(db.ApiKey).where(db.ApiKey.key_hash == hash_key(key), db.ApiKey.revoked.is_(False)))
    if row is None:
        raise HTTPException(401, "invalid API key")
    return row


ClientDep = Annotated[db.ApiKey, Depends(get_client)]


def get_agent(request: Request) -> Agent:
    return request.app.state.agent


AgentDep = Annotated[Agent, Depends(get_agent)]


def _owned(session: Session, conversation_id: str, client: db.ApiKey, lock: bool = False) -> db.Conversation:
    if len(conversation_id) > 36 or "\x00" in conversation_id:  # cannot be an id: do not ask the database
        raise HTTPException(404, f"no conversation {conversation_id}")
    query = select(db.Conversation).where(
        db.Conversation.id == conversation_id, db.Conversation.api_key_id == client.id
    )
    if lock:
        query = query.with_for_update()
    conv = session.scalar(query)
    if conv is None:
        raise HTTPException(404, f"no conversation {conversation_id}")
    return conv


# -- routes ------------------------------------------------------------------------------------
conversations = APIRouter(prefix="/v1/conversations", tags=["conversations"])


@conversations.post("", status_code=201)
def create_conversation(
    body: ConversationIn, session: SessionDep, client: ClientDep, agent: AgentDep, request: Request
) -> dict[str, str]:
    """Start a conversation; returns its id."""
    try:
        domain = load_domain(body.domain)
    except DomainError as e:
        raise HTTPException(422, str(e)) from e
    if ObservationLayout(domain.n_slots).size != agent.spec.obs_dim:
        raise HTTPException(422, f"the loaded policy does not serve domain {body.domain!r}")
    settings: Settings = request.app.state.settings
    conv = db.Conversation(
        api_key_id=client.id,
        client_user_ref=body.client_user_ref,
        domain=domain.name,
        state=new_state(domain, settings.max_turns, agent.latent_dim),
    )
    session.add(conv)
    session.commit()
    request.app.state.metrics["conversations"].inc()
    return {"id": conv.id}


@conversations.post("/{conversation_id}/turns")
def post_turn(
    conversation_id: str, body: TurnIn, session: SessionDep, client: ClientDep, agent: AgentDep, request: Request
) -> ReplyOut:
    """One user turn (text, structured acts, or both) -> the system's reply and the segment read-out.

    Structured acts bypass the NLU; text alone goes through it. The text is stored either way.
    """
    started = time.perf_counter()
    settings: Settings = request.app.state.settings
    if body.text is not None and not body.text.strip():
        raise HTTPException(422, "text is empty")
    if body.text is not None and len(body.text) > settings.max_text_chars:
        raise HTTPException(422, f"text is longer than {settings.max_text_chars} characters")
    if not body.acts and body.text is None:
        raise HTTPException(422, "a turn needs text, structured acts, or both")
    conv = _owned(session, conversation_id, client, lock=True)
    if body.idempotency_key:
        stored = session.scalar(
            select(db.Turn).where(db.Turn.conversation_id == conv.id, db.Turn.idempotency_key == body.idempotency_key)
        )
        if stored is not None:
            return ReplyOut(**stored.reply)
    if conv.ended_at is not None:
        raise HTTPException(409, f"conversation {conversation_id} has ended")
    domain = load_domain(conv.domain)
    acts = [a.model_dump() for a in body.acts]
    if not acts:
        assert body.text is not None
        acts, _ = request.app.state.nlu.parse(body.text, conv.domain)
    try:
        parsed = parse_acts(domain, acts)
    except TurnError as e:
        raise HTTPException(422, str(e)) from e
    # The register is read from the words by the NLU; a turn without text counts as plain.
    register = request.app.state.nlu.register(body.text) if body.text else 0.5
    reply = take_turn(agent, domain, settings.max_turns, conv.state, parsed, register)
    segment = max(reply.segment_probabilities, key=lambda s: reply.segment_probabilities[s], default=None)
    confidence = reply.segment_probabilities[segment] if segment else None
    out = ReplyOut(
        conversation_id=conv.id,
        turn_index=conv.turn_count,
        system_act=reply.system_act,
        system_slot=reply.system_slot,
        system_text=reply.system_text,
        segment=segment,
        confidence=confidence,
        segment_probabilities=reply.segment_probabilities,
        posterior_mean=reply.posterior_mean,
        posterior_variance=reply.posterior_variance,
        ended=reply.ended,
    )
    now = datetime.now(UTC)
    session.add(
        db.Turn(
            conversation_id=conv.id,
            turn_index=conv.turn_count,
            idempotency_key=body.idempotency_key,
            user_text=body.text,
            user_acts=acts,
            system_act=reply.system_act,
            system_slot=reply.system_slot,
            system_text=reply.system_text,
            belief=reply.belief.to_dict(),
            segment_probabilities=reply.segment_probabilities,
            reply=out.model_dump(),
            latency_ms=1000 * (time.perf_counter() - started),
        )
    )
    conv.state = reply.state
    conv.turn_count += 1
    conv.segment, conv.confidence, conv.updated_at = segment, confidence, now
    if reply.ended:
        conv.ended_at = now
    try:
        session.commit()
    except IntegrityError as e:  # a concurrent request with the same key won the race
        session.rollback()
        raise HTTPException(409, "a concurrent turn on this conversation was stored first; retry") from e
    request.app.state.metrics["turns"].inc()
    request.app.state.metrics["latency"].observe(time.perf_counter() - started)
    return out


@conversations.get("/{conversation_id}")
def get_conversation(conversation_id: str, session: SessionDep, client: ClientDep) -> dict[str, Any]:
    """The whole conversation with its turns."""
    conv = _owned(session, conversation_id, client)
    return {
        "id": conv.id,
        "domain": conv.domain,
        "client_user_ref": conv.client_user_ref,
        "created_at": conv.created_at.isoformat(),
        "ended_at": conv.ended_at.isoformat() if conv.ended_at else None,
        "outcome": conv.outcome,
        "rating": conv.rating,
        "segment": conv.segment,
        "confidence": conv.confidence,
        "turns": [
            {
                "turn_index": t.turn_index,
                "user_text": t.user_text,
                "user_acts": t.user_acts,
                "reply": t.reply,
                "latency_ms": t.latency_ms,
            }
            for t in conv.turns
        ],
    }


@conversations.post("/{conversation_id}/end")
def end_conversation(conversation_id: str, body: EndIn, session: SessionDep, client: ClientDep) -> dict[str, Any]:
    """Record the outcome (and an optional 1-5 rating) of a conversation."""
    conv = _owned(session, conversation_id, client, lock=True)
    if conv.outcome is not None:
        raise HTTPException(409, f"conversation {conversation_id} already has an outcome")
    conv.outcome, conv.rating = body.outcome, body.rating
    conv.ended_at = conv.ended_at or datetime.now(UTC)
    session.commit()
    return {"id": conv.id, "outcome": conv.outcome, "rating": conv.rating}


meta = APIRouter(tags=["service"])


@meta.get("/v1/policy")
def policy_card(agent: AgentDep, client: ClientDep) -> dict[str, Any]:
    """The loaded checkpoint's card (without its training history)."""
    card = agent.card.to_json() if agent.card else {}
    card.get("training", {}).pop("history", None)
    return card


@meta.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@meta.get("/readyz")
def readyz(request: Request, response: Response) -> dict[str, str]:
    """The database answers and its schema is current; the policy is loaded."""
    try:
        with request.app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        db.check_schema(request.app.state.engine)
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
        engine = db.make_engine(settings.database_url)
        if settings.is_sqlite and db.current_revision(engine) is None:
            db.upgrade(settings.database_url)  # the embedded default needs no extra step
        db.check_schema(engine)
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessions = db.session_factory(engine)
        app.state.agent = agent or Agent.load(settings.model_path)
        app.state.nlu = NLU.load(settings.nlu_path, {d: load_domain(d) for d in available_domains()})
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
        engine.dispose()

    app = FastAPI(
        title="segdial",
        version="0.1.0",
        lifespan=lifespan,
        description="A segment-adaptive dialogue policy: send user turns, get system acts and segment read-outs.",
    )
    app.include_router(conversations)
    app.include_router(meta)
    return app
