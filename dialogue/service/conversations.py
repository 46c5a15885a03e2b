"""The service layer: start a conversation, take a user turn, end it, read it back — without HTTP.

The FastAPI routes and the Rasa action server call these functions, so both paths store the same
rows and give the same replies. A ``Runtime`` holds what a process loads once (settings, the
database engine, the policy, the NLU); nothing about a conversation is kept in memory between
calls.

A turn is one write transaction: it locks the conversation row (``SELECT ... FOR UPDATE`` on
PostgreSQL; on SQLite the database write lock, taken at ``BEGIN IMMEDIATE``), replays the stored
reply of a retried idempotency key, applies the turn to the stored state and writes the state and
the turn back. The NLU, the slow part of a text turn, runs before that transaction, so writers
hold the lock only for the policy step and the row writes. On SQLite the writers also queue on
``db.SqliteWriteQueue`` (threads and worker processes alike): SQLite's own busy handler makes
waiting writers sleep in steps of up to 100 ms, which turned short queues into second-long stalls
under load.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from dialogue.domain import DomainError, available_domains, load_domain
from dialogue.nlu import NLU
from dialogue.service import db
from dialogue.service.schemas import ReplyOut, TurnIn
from dialogue.service.settings import Settings
from dialogue.service.turns import TurnError, new_state, parse_acts, take_turn
from dialogue.tracker import ObservationLayout
from metarl_core.inference import Agent

KEY_PREFIX = "sdk_"


# The turn's statements, built once (their compiled form is cached; only parameters change).
_C, _T = db.CONVERSATIONS, db.TURNS
_LOCK_CONVERSATION = (
    select(_C.c.domain, _C.c.state, _C.c.turn_count, _C.c.ended_at)
    .where(_C.c.id == bindparam("id_"), _C.c.api_key_id == bindparam("client"))
    .with_for_update()
)
_STORED_REPLY = select(_T.c.reply).where(
    _T.c.conversation_id == bindparam("id_"), _T.c.idempotency_key == bindparam("key")
)
_INSERT_TURN = insert(_T)
_INSERT_CONVERSATION = insert(_C)
_CLIENT_OF_KEY = select(db.ApiKey.id).where(db.ApiKey.key_hash == bindparam("hash"), db.ApiKey.revoked.is_(False))
_UPDATE_CONVERSATION = update(_C).where(_C.c.id == bindparam("id_"))


class ServiceError(Exception):
    """A request the service refuses; ``status`` is the HTTP status it maps to."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, name: str) -> str:
    """Store a new API key (hashed) and return it; it is never shown again."""
    key = KEY_PREFIX + secrets.token_urlsafe(24)
    session.add(db.ApiKey(name=name, key_hash=hash_key(key)))
    session.commit()
    return key


class TurnResult(NamedTuple):
    """The reply to a turn, and whether it is the stored reply of a retried idempotency key."""

    reply: ReplyOut
    replayed: bool


@dataclass
class Runtime:
    """What one process of the service loads once: settings, database, policy and NLU."""

    settings: Settings
    engine: Engine
    agent: Agent
    nlu: NLU
    reads: sessionmaker = field(init=False)
    writes: sessionmaker = field(init=False)
    _writer: Engine = field(init=False)
    _write_queue: db.SqliteWriteQueue | None = field(init=False)

    def __post_init__(self) -> None:
        self.reads = db.session_factory(self.engine)
        self._writer = db.writer(self.engine)
        self.writes = db.session_factory(self._writer)
        self._write_queue = db.SqliteWriteQueue(self.settings.database_url) if self.settings.is_sqlite else None

    @classmethod
    def open(cls, settings: Settings, agent: Agent | None = None) -> Runtime:
        """Connect (migrating an embedded SQLite database on first use), check the schema, load the models."""
        engine = db.make_engine(settings.database_url)
        try:
            if settings.is_sqlite and db.current_revision(engine) is None:
                db.upgrade(settings.database_url)  # the embedded default needs no extra step
            db.check_schema(engine)
            agent = agent or Agent.load(settings.model_path)
            nlu = NLU.load(settings.nlu_path, {d: load_domain(d) for d in available_domains()})
        except BaseException:
            engine.dispose()
            raise
        return cls(settings, engine, agent, nlu)

    def close(self) -> None:
        if self._write_queue is not None:
            self._write_queue.close()
        self.engine.dispose()

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction's ORM session (SQLite: queued on the process's write lock)."""
        with self._write_queue or contextlib.nullcontext(), self.writes() as session:
            yield session

    @contextlib.contextmanager
    def write_connection(self) -> Iterator[Connection]:
        """A write transaction on a Core connection, committed at the end unless an error escapes."""
        with self._write_queue or contextlib.nullcontext(), self._writer.begin() as conn:
            yield conn

    # -- clients -------------------------------------------------------------------------------
    def client_of(self, key: str) -> int | None:
        """The client id of an API key, or None when it is unknown or revoked."""
        with self.engine.connect() as conn:
            return conn.execute(_CLIENT_OF_KEY, {"hash": hash_key(key)}).scalar_one_or_none()

    def client_named(self, name: str) -> int:
        """The id of an in-process client (e.g. the Rasa action server), created on first use.

        Its key row holds the hash of a random secret that is never shown, so the client cannot be
        used over HTTP.
        """
        with self.write() as session:
            found = session.scalar(select(db.ApiKey.id).where(db.ApiKey.name == name).order_by(db.ApiKey.id))
            if found is not None:
                return found
            row = db.ApiKey(name=name, key_hash=hash_key(secrets.token_urlsafe(32)))
            session.add(row)
            session.commit()
            return row.id

    # -- conversations -------------------------------------------------------------------------
    def start_conversation(self, client_id: int, domain: str = "restaurant", client_user_ref: str | None = None) -> str:
        """A new conversation of ``client_id``; returns its id."""
        try:
            dom = load_domain(domain)
        except DomainError as e:
            raise ServiceError(422, str(e)) from e
        if ObservationLayout(dom.n_slots).size != self.agent.spec.obs_dim:
            raise ServiceError(422, f"the loaded policy does not serve domain {domain!r}")
        conversation_id, now = str(uuid.uuid4()), datetime.now(UTC)
        with self.write_connection() as conn:
            conn.execute(
                _INSERT_CONVERSATION,
                {
                    "id": conversation_id,
                    "api_key_id": client_id,
                    "client_user_ref": client_user_ref,
                    "domain": dom.name,
                    "state": new_state(dom, self.settings.max_turns, self.agent.latent_dim),
                    "turn_count": 0,
                    "created_at": now,
                    "updated_at": now,
                },
            )
        return conversation_id

    def conversations_of(
        self, client_id: int, client_user_ref: str, *, open_only: bool = False, limit: int = 20
    ) -> list[dict[str, Any]]:
        """The conversations of ``client_user_ref`` (newest first), only those not ended with ``open_only``."""
        query = select(_C.c.id, _C.c.created_at, _C.c.ended_at, _C.c.turn_count, _C.c.segment).where(
            _C.c.api_key_id == client_id, _C.c.client_user_ref == client_user_ref
        )
        if open_only:
            query = query.where(_C.c.ended_at.is_(None))
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(_C.c.created_at.desc()).limit(limit)).all()
        return [
            {
                "id": r.id,
                "created_at": r.created_at.isoformat(),
                "ended_at": r.ended_at.isoformat() if r.ended_at else None,
                "turn_count": r.turn_count,
                "segment": r.segment,
            }
            for r in rows
        ]

    def open_conversation_of(self, client_id: int, client_user_ref: str) -> str | None:
        """The newest conversation of ``client_user_ref`` that has not ended, if there is one."""
        found = self.conversations_of(client_id, client_user_ref, open_only=True, limit=1)
        return str(found[0]["id"]) if found else None

    def user_turn(self, client_id: int, conversation_id: str, body: TurnIn) -> TurnResult:
        """One user turn (text, structured acts, or both) -> the system's reply and the segment read-out.

        Structured acts bypass the NLU; text alone goes through it. The text is stored either way,
        and its register (terse, plain, chatty) is read from the words; a turn without text counts
        as plain.
        """
        started = time.perf_counter()
        if body.text is not None and not body.text.strip():
            raise ServiceError(422, "text is empty")
        if body.text is not None and len(body.text) > self.settings.max_text_chars:
            raise ServiceError(422, f"text is longer than {self.settings.max_text_chars} characters")
        if not body.acts and body.text is None:
            raise ServiceError(422, "a turn needs text, structured acts, or both")
        _check_id(conversation_id)
        acts = [a.model_dump() for a in body.acts]
        register = 0.5
        if body.text is not None and acts:
            register = self.nlu.register(body.text)
        elif body.text is not None:
            with self.reads() as session:
                domain_name = _owned(session, conversation_id, client_id).domain
            acts, _, register = self.nlu.read(body.text, domain_name)
        # Compiled Core statements rather than the ORM: this is the hot path, and a unit-of-work
        # flush cost more than the policy step.
        with self.write_connection() as conn:
            conv = conn.execute(_LOCK_CONVERSATION, {"id_": conversation_id, "client": client_id}).one_or_none()
            if conv is None:
                raise ServiceError(404, f"no conversation {conversation_id}")
            if body.idempotency_key:
                stored = conn.execute(
                    _STORED_REPLY, {"id_": conversation_id, "key": body.idempotency_key}
                ).scalar_one_or_none()
                if stored is not None:
                    return TurnResult(ReplyOut(**stored), replayed=True)
            if conv.ended_at is not None:
                raise ServiceError(409, f"conversation {conversation_id} has ended")
            domain = load_domain(conv.domain)
            try:
                parsed = parse_acts(domain, acts)
            except TurnError as e:
                raise ServiceError(422, str(e)) from e
            reply = take_turn(self.agent, domain, self.settings.max_turns, conv.state, parsed, register)
            probs = reply.segment_probabilities
            segment = max(probs, key=lambda s: probs[s], default=None)
            confidence = probs[segment] if segment else None
            out = ReplyOut(
                conversation_id=conversation_id,
                turn_index=conv.turn_count,
                system_act=reply.system_act,
                system_slot=reply.system_slot,
                system_text=reply.system_text,
                segment=segment,
                confidence=confidence,
                segment_probabilities=probs,
                posterior_mean=reply.posterior_mean,
                posterior_variance=reply.posterior_variance,
                ended=reply.ended,
            )
            now = datetime.now(UTC)
            try:
                conn.execute(
                    _INSERT_TURN,
                    {
                        "conversation_id": conversation_id,
                        "turn_index": conv.turn_count,
                        "idempotency_key": body.idempotency_key,
                        "user_text": body.text,
                        "user_acts": acts,
                        "system_act": reply.system_act,
                        "system_slot": reply.system_slot,
                        "system_text": reply.system_text,
                        "belief": reply.belief.to_dict(),
                        "segment_probabilities": probs,
                        "reply": out.model_dump(),
                        "latency_ms": 1000 * (time.perf_counter() - started),
                        "created_at": now,
                    },
                )
            except IntegrityError as e:  # a concurrent request with the same key won the race
                raise ServiceError(409, "a concurrent turn on this conversation was stored first; retry") from e
            conn.execute(
                _UPDATE_CONVERSATION,
                {
                    "id_": conversation_id,
                    "state": reply.state,
                    "turn_count": conv.turn_count + 1,
                    "segment": segment,
                    "confidence": confidence,
                    "updated_at": now,
                    "ended_at": now if reply.ended else None,
                },
            )
        return TurnResult(out, replayed=False)

    def end_conversation(
        self, client_id: int, conversation_id: str, outcome: str, rating: int | None = None
    ) -> dict[str, Any]:
        """Record the outcome (and an optional 1-5 rating) of a conversation."""
        _check_id(conversation_id)
        with self.write() as session:
            conv = _owned(session, conversation_id, client_id, lock=True)
            if conv.outcome is not None:
                raise ServiceError(409, f"conversation {conversation_id} already has an outcome")
            conv.outcome, conv.rating = outcome, rating
            conv.ended_at = conv.ended_at or datetime.now(UTC)
            session.commit()
            return {"id": conv.id, "outcome": conv.outcome, "rating": conv.rating}

    def conversation(self, client_id: int, conversation_id: str) -> dict[str, Any]:
        """The whole conversation with its turns."""
        _check_id(conversation_id)
        with self.reads() as session:
            conv = _owned(session, conversation_id, client_id)
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


def _check_id(conversation_id: str) -> None:
    if len(conversation_id) > 36 or "\x00" in conversation_id:  # cannot be an id: do not ask the database
        raise ServiceError(404, f"no conversation {conversation_id}")


def _owned(session: Session, conversation_id: str, client_id: int, lock: bool = False) -> db.Conversation:
    query = select(db.Conversation).where(
        db.Conversation.id == conversation_id, db.Conversation.api_key_id == client_id
    )
    if lock:
        query = query.with_for_update()
    conv = session.scalar(query)
    if conv is None:
        raise ServiceError(404, f"no conversation {conversation_id}")
    return conv
