"""The service layer: start a conversation, take a user turn, end it, read it back — without HTTP.

The FastAPI routes and the Rasa action server call these functions, so both paths store the same
rows and give the same replies. A ``Runtime`` holds what a process loads once (settings, the
database engine, the policy, the NLU); nothing about a conversation is kept in memory between
calls.

A turn is optimistic: it reads the stored state (and the stored reply of a retried idempotency
key) without taking a lock, runs the NLU and the policy step, and then writes the turn only if the
conversation is still at the turn count it read (``UPDATE ... WHERE turn_count = :seen``). A turn
that lost that race to a concurrent turn on the same conversation reads again and recomputes, so
turn indexes are never lost or duplicated and a retried key still gets its stored reply. Locks are
held only for the writes. On PostgreSQL the write is one statement (the conditional update and the
turn's insert in one data-modifying CTE, its own transaction), so a turn's database work is two
round trips. On SQLite the writers queue on ``db.SqliteWriteQueue`` (threads and worker processes
alike): SQLite's own busy handler makes waiting writers sleep in steps of up to 100 ms, which
turned short queues into second-long stalls under load.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from dialogue.domain import DomainError, available_domains, load_domain
from dialogue.nlu import NLU
from dialogue.service import db
from dialogue.service.schemas import OfferOut, ReplyOut, TurnIn
from dialogue.service.settings import Settings
from dialogue.service.turns import (
    ParsedTurn,
    Reply,
    TurnError,
    new_state,
    parse_acts,
    parse_reading,
    prompt_context,
    take_turn,
)
from dialogue.tracker import ObservationLayout
from metarl_core.inference import Agent

KEY_PREFIX = "sdk_"


# The turn's statements, built once (their compiled form is cached; only parameters change).
_C, _T = db.CONVERSATIONS, db.TURNS
# The stored state and, for a retried idempotency key, the stored reply (NULL otherwise).
_READ_TURN_STATE = (
    select(_C.c.domain, _C.c.state, _C.c.turn_count, _C.c.ended_at, _T.c.reply, _T.c.request_hash)
    .select_from(_C.outerjoin(_T, and_(_T.c.conversation_id == _C.c.id, _T.c.idempotency_key == bindparam("key"))))
    .where(_C.c.id == bindparam("id_"), _C.c.api_key_id == bindparam("client"))
)
# The conversation's new state, only if no other turn was stored since it was read.
_TURN_UPDATES = ("state", "turn_count", "segment", "confidence", "updated_at", "ended_at")
_CLAIM_CONVERSATION = (
    update(_C)
    .where(_C.c.id == bindparam("id_"), _C.c.turn_count == bindparam("seen"))
    .values({name: bindparam(f"c_{name}", type_=_C.c[name].type) for name in _TURN_UPDATES})
)
_TURN_VALUES = [c for c in _T.c if c.name not in ("id", "conversation_id")]
_INSERT_TURN = insert(_T).values(
    conversation_id=bindparam("id_"), **{c.name: bindparam(f"t_{c.name}", type_=c.type) for c in _TURN_VALUES}
)
# PostgreSQL: both in one statement; the turn is inserted only if the update claimed the row.
_claimed = _CLAIM_CONVERSATION.returning(_C.c.id).cte("claimed")
_CLAIM_AND_INSERT_TURN = (
    insert(_T)
    .from_select(
        ["conversation_id", *(c.name for c in _TURN_VALUES)],
        select(_claimed.c.id, *(bindparam(f"t_{c.name}", type_=c.type) for c in _TURN_VALUES)),
    )
    .returning(_T.c.id)
)  # a row when the turn was stored (``rowcount`` is not reliable for INSERT ... SELECT)
_INSERT_CONVERSATION = insert(_C)
_CLIENT_OF_KEY = select(db.ApiKey.id).where(db.ApiKey.key_hash == bindparam("hash"), db.ApiKey.revoked.is_(False))

# How often a turn reads again after losing the race to a concurrent turn on its conversation
# before it is refused with 409 (the client may retry with the same idempotency key).
TURN_ATTEMPTS = 10


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
    serial_turns: bool = False
    reads: sessionmaker = field(init=False)
    writes: sessionmaker = field(init=False)
    _writer: Engine = field(init=False)
    _statements: Engine = field(init=False)
    _write_queue: db.SqliteWriteQueue | None = field(init=False)
    _turn_lock: contextlib.AbstractContextManager[Any] = field(init=False)

    def __post_init__(self) -> None:
        self.reads = db.session_factory(self.engine)
        self._writer = db.writer(self.engine)
        self._statements = db.autocommit(self.engine)
        self.writes = db.session_factory(self._writer)
        self._write_queue = db.SqliteWriteQueue(self.settings.database_url) if self.settings.is_sqlite else None
        # ``serial_turns`` on SQLite: one turn at a time in this process, from its read to its write.
        # For an embedder whose many threads do nothing but turns (the Rasa action server's
        # in-process backend): interleaved, the writer holding the queue waits for the GIL behind
        # the others (8 threads: 240 turns/s, 598 with the lock). The HTTP app leaves it off: there
        # the other threads parse requests, and serial turns cut its peak (about 360 against 470
        # act turns/s, `bench/service_latency.py --quick`). Across processes turns always compute in
        # parallel; the turn count check catches the races. Re-entrant, so a turn stored from inside
        # another's computation (as a test does) goes through.
        serial = self.serial_turns and self.settings.is_sqlite
        self._turn_lock = threading.RLock() if serial else contextlib.nullcontext()

    @classmethod
    def open(cls, settings: Settings, agent: Agent | None = None, serial_turns: bool = False) -> Runtime:
        """Connect (migrating an embedded SQLite database on first use), check the schema, load the models.

        ``serial_turns``: on SQLite, run one turn at a time in this process (see ``__post_init__``).
        """
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
        return cls(settings, engine, agent, nlu, serial_turns)

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

    @contextlib.contextmanager
    def write_statement(self) -> Iterator[Connection]:
        """A connection for one write statement: on PostgreSQL the statement is its own transaction
        (no ``BEGIN``/``COMMIT`` round trips); on SQLite the same as ``write_connection``."""
        if self._write_queue is not None:
            with self.write_connection() as conn:
                yield conn
        else:
            with self._statements.connect() as conn:
                yield conn

    # -- clients -------------------------------------------------------------------------------
    def client_of(self, key: str) -> int | None:
        """The client id of an API key, or None when it is unknown or revoked."""
        with self._statements.connect() as conn:
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
    def served_domains(self) -> list[str]:
        """The domains the loaded policy can serve (its observation fits theirs)."""
        return [
            d for d in available_domains() if ObservationLayout(load_domain(d).n_slots).size == self.agent.spec.obs_dim
        ]

    def start_conversation(self, client_id: int, domain: str = "restaurant", client_user_ref: str | None = None) -> str:
        """A new conversation of ``client_id``; returns its id."""
        try:
            dom = load_domain(domain)
        except DomainError as e:
            raise ServiceError(422, str(e)) from e
        if ObservationLayout(dom.n_slots).size != self.agent.spec.obs_dim:
            raise ServiceError(422, f"the loaded policy does not serve domain {domain!r}")
        conversation_id, now = str(uuid.uuid4()), datetime.now(UTC)
        with self.write_statement() as conn:
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
        with self._statements.connect() as conn:
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
        if body.text is not None and len(body.text) > self.settings.max_text_chars:
            raise ServiceError(422, f"text is longer than {self.settings.max_text_chars} characters")
        if not body.acts and body.text is None:
            raise ServiceError(422, "a turn needs text, structured acts, or both")
        if len(body.acts) > self.settings.max_acts:
            raise ServiceError(422, f"a turn carries at most {self.settings.max_acts} acts, got {len(body.acts)}")
        _check_id(conversation_id)
        acts = [a.model_dump() for a in body.acts]
        register = 0.5
        if body.text is not None and acts:
            register = self.nlu.register(body.text)
        read = {"id_": conversation_id, "client": client_id, "key": body.idempotency_key}
        conv = None
        understood: bool | None = None  # the NLU's reading of text alone (None: the client's acts)
        if not acts:  # text alone: the NLU needs the conversation's domain, and runs outside the turn lock
            conv = self._read_turn_state(read)
            if conv is not None and conv.reply is None and conv.ended_at is None:
                context = prompt_context(load_domain(conv.domain), conv.state)
                reading = self.nlu.read(body.text or "", conv.domain, context)
                register = reading.register
                # Nothing understood: the tracker hears "confused", to which the policy rephrases.
                acts = reading.acts or [{"act": "confused"}]
                understood = reading.understood and bool(reading.acts)
        with self._turn_lock:
            return self._claim_turn(read, conv, body, acts, register, started, understood)

    def _read_turn_state(self, read: dict[str, Any]) -> Any:
        with self._statements.connect() as conn:
            return conn.execute(_READ_TURN_STATE, read).one_or_none()

    def _claim_turn(
        self,
        read: dict[str, Any],
        conv: Any,
        body: TurnIn,
        acts: list[dict[str, Any]],
        register: float,
        started: float,
        understood: bool | None = None,
    ) -> TurnResult:
        """Compute the reply from the stored state (``conv``: already read, else read here) and store it
        if no other turn came first; else read again."""
        conversation_id = read["id_"]
        parsed: ParsedTurn | None = None
        for attempt in range(TURN_ATTEMPTS):
            if attempt or conv is None:  # a stale first read only loses the race below and reads again
                conv = self._read_turn_state(read)
            if conv is None:
                raise ServiceError(404, f"no conversation {conversation_id}")
            if conv.reply is not None:
                if conv.request_hash is not None and conv.request_hash != request_hash(body):
                    raise ServiceError(
                        422, f"idempotency key {body.idempotency_key!r} was used before with a different request body"
                    )
                return TurnResult(ReplyOut(**conv.reply), replayed=True)
            if conv.ended_at is not None:
                raise ServiceError(409, f"conversation {conversation_id} has ended")
            if conv.turn_count >= self.settings.max_turns:  # stored before the limit was lowered
                raise ServiceError(
                    409, f"conversation {conversation_id} reached its limit of {self.settings.max_turns} turns"
                )
            domain = load_domain(conv.domain)
            if parsed is None and understood is not None:  # the NLU's reading, from text alone
                parsed = parse_reading(domain, acts, understood)
            elif parsed is None:  # the client's acts (checked once: the check does not depend on the state)
                try:
                    parsed = parse_acts(domain, acts)
                except TurnError as e:
                    raise ServiceError(422, str(e)) from e
            reply = take_turn(
                self.agent,
                domain,
                self.settings.max_turns,
                conv.state,
                parsed,
                register,
                self.settings.handover_after,
                final_turn=conv.turn_count + 1 >= self.settings.max_turns,
            )
            out = _reply_out(conversation_id, conv.turn_count, reply)
            if self._store_turn(conv.turn_count, out, reply, body, acts, started):
                return TurnResult(out, replayed=False)
        raise ServiceError(409, "concurrent turns on this conversation kept being stored first; retry")

    def _store_turn(
        self, seen: int, out: ReplyOut, reply: Reply, body: TurnIn, acts: list[dict[str, Any]], started: float
    ) -> bool:
        """Store the turn if the conversation is still at turn count ``seen``; False if another turn came first."""
        now = datetime.now(UTC)
        params = {
            "id_": out.conversation_id,
            "seen": seen,
            "c_state": reply.state,
            "c_turn_count": seen + 1,
            "c_segment": out.segment,
            "c_confidence": out.confidence,
            "c_updated_at": now,
            "c_ended_at": now if reply.ended else None,
            "t_turn_index": seen,
            "t_idempotency_key": body.idempotency_key,
            "t_request_hash": request_hash(body) if body.idempotency_key is not None else None,
            "t_user_text": body.text,
            "t_user_acts": acts,
            "t_system_act": reply.system_act,
            "t_system_slot": reply.system_slot,
            "t_system_text": reply.system_text,
            "t_belief": reply.belief.to_dict(),
            "t_segment_probabilities": out.segment_probabilities,
            "t_reply": out.model_dump(),
            "t_latency_ms": 1000 * (time.perf_counter() - started),
            "t_created_at": now,
        }
        # Compiled Core statements rather than the ORM: this is the hot path, and a unit-of-work
        # flush cost more than the policy step.
        try:
            if not self.settings.is_sqlite:
                with self.write_statement() as conn:
                    return conn.execute(_CLAIM_AND_INSERT_TURN, params).first() is not None
            with self.write_connection() as conn:
                if conn.execute(_CLAIM_CONVERSATION, params).rowcount == 0:
                    return False
                conn.execute(_INSERT_TURN, params)
                return True
        except IntegrityError:  # a concurrent turn took this index or idempotency key: read again
            return False

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
                "booking": (conv.state or {}).get("booked"),
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


def _reply_out(conversation_id: str, turn_index: int, reply: Reply) -> ReplyOut:
    probs = reply.segment_probabilities
    segment = max(probs, key=lambda s: probs[s], default=None)
    return ReplyOut(
        conversation_id=conversation_id,
        turn_index=turn_index,
        system_act=reply.system_act,
        system_slot=reply.system_slot,
        system_value=reply.system_value,
        system_text=reply.system_text,
        segment=segment,
        confidence=probs[segment] if segment else None,
        segment_probabilities=probs,
        posterior_mean=reply.posterior_mean,
        posterior_variance=reply.posterior_variance,
        ended=reply.ended,
        offer=OfferOut(**reply.offer) if reply.offer else None,
        booking=reply.booking,
        handover=reply.handover is not None,
        handover_reason=reply.handover,
        guarded=reply.guarded,
    )


def request_hash(body: TurnIn) -> str:
    """SHA-256 of a turn's request without its idempotency key (a retry must send the same turn)."""
    canonical = json.dumps(body.model_dump(exclude={"idempotency_key"}), sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


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
