"""Persistence: conversations, turns and API keys with SQLAlchemy 2.0; Alembic owns the schema.

A conversation row holds the whole state of the dialogue (the tracker and the belief's natural
parameters), so any replica can serve any turn and a restart loses nothing. Turns are unique per
(conversation, turn index) and per (conversation, idempotency key): a retried request finds its
stored reply, and two concurrent turns can never get the same index.
"""

from __future__ import annotations

import fcntl
import os
import select
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"), index=True)
    client_user_ref: Mapped[str | None] = mapped_column(String(200), nullable=True)
    domain: Mapped[str] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    turn_count: Mapped[int] = mapped_column(Integer, default=0)
    segment: Mapped[str | None] = mapped_column(String(50), nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(20), nullable=True)
    rating: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Known for simulated users only (``segdial report --simulate``); NULL for real conversations.
    true_segment: Mapped[str | None] = mapped_column(String(50), nullable=True)
    episode_return: Mapped[float | None] = mapped_column(Float, nullable=True)

    turns: Mapped[list[Turn]] = relationship(back_populates="conversation", order_by="Turn.turn_index")


class Turn(Base):
    __tablename__ = "turns"
    __table_args__ = (
        UniqueConstraint("conversation_id", "turn_index", name="uq_turn_index"),
        UniqueConstraint("conversation_id", "idempotency_key", name="uq_turn_idempotency"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    turn_index: Mapped[int] = mapped_column(Integer)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # SHA-256 of the request (without its key) when it had an idempotency key: a retry must match it.
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    user_acts: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    system_act: Mapped[str] = mapped_column(String(30))
    system_slot: Mapped[str | None] = mapped_column(String(50), nullable=True)
    system_text: Mapped[str] = mapped_column(Text)
    belief: Mapped[dict[str, Any]] = mapped_column(JSON)
    segment_probabilities: Mapped[dict[str, float]] = mapped_column(JSON)
    reply: Mapped[dict[str, Any]] = mapped_column(JSON)
    latency_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    conversation: Mapped[Conversation] = relationship(back_populates="turns")


# The tables, for Core statements on the hot path (the turn).
CONVERSATIONS = cast(Table, Conversation.__table__)
TURNS = cast(Table, Turn.__table__)

WRITER = "segdial_writer"  # execution option of the engine that write transactions use


def make_engine(url: str) -> Engine:
    """An engine; on SQLite, transactions of ``writer(engine)`` begin IMMEDIATE so writers queue
    instead of racing, and every other transaction is a plain (deferred) read."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _: Any) -> None:
            dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN below control transactions
            dbapi_conn.execute("PRAGMA foreign_keys=ON")
            # WAL: readers do not block the writer, and a commit is an append (no full fsync of the
            # database each time); a crash loses at most the last commits, never consistency.
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITER) else "BEGIN")

        return engine
    if make_url(url).get_driver_name() != "psycopg":
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url)

    @event.listens_for(engine, "checkout")
    def _drop_if_closed(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        # What pool_pre_ping catches, without its round trip on every checkout: a server that
        # restarted or ended the session has closed the socket (or sent its reason), so an idle
        # pooled connection whose socket is readable is dead; the pool then opens a new one.
        if dbapi_conn.closed or dbapi_conn.broken:
            raise DisconnectionError("the connection is closed")
        ready = select.poll()
        ready.register(dbapi_conn.pgconn.socket, select.POLLIN)
        if ready.poll(0):
            raise DisconnectionError("the server closed the connection")

    return engine


def writer(engine: Engine) -> Engine:
    """The same engine (same pool) for write transactions: SQLite takes its write lock at BEGIN, so
    a read-then-write transaction never fails to upgrade its lock; PostgreSQL is unchanged."""
    return engine.execution_options(**{WRITER: True})


def autocommit(engine: Engine) -> Engine:
    """The same engine (same pool) for single statements: on PostgreSQL each statement is its own
    transaction, which saves the round trips of ``BEGIN`` and ``COMMIT``/``ROLLBACK``. SQLite is
    in-process (a deferred ``BEGIN`` costs microseconds and takes no lock), so it is unchanged."""
    return engine if engine.dialect.name == "sqlite" else engine.execution_options(isolation_level="AUTOCOMMIT")


class SqliteWriteQueue:
    """Queues the writers of one SQLite database: threads on a lock, processes on ``flock``.

    SQLite's own busy handler makes a waiting writer sleep (1, 2, 5, ... up to 100 ms) and retry,
    which turns a short queue into long stalls. Here a waiting writer blocks in the kernel and
    wakes the moment the lock is free, whether the holder is a thread of this process or another
    worker process on the same file. ``BEGIN IMMEDIATE`` (and its busy timeout) stays the safety net
    for writers that do not use this queue (the CLI, migrations).
    """

    def __init__(self, url: str) -> None:
        self._threads = threading.Lock()
        database = make_url(url).database
        self._path = f"{database}.writelock" if database and database != ":memory:" else None
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._threads.acquire()
        if self._path is not None:
            try:
                if self._fd is None:
                    self._fd = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o600)
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self._threads.release()
                raise

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def safe_url(url: str) -> str:
    """The URL with its password masked, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: show no part of it that could hold a secret
        return url.split("://", 1)[0] + "://..." if "://" in url else "(not a URL)"


def safe_error(error: BaseException, url: str) -> str:
    """The first line of a database error, with the URL's password removed if the driver echoed it."""
    line = (str(getattr(error, "orig", None) or error).strip().splitlines() or [type(error).__name__])[0]
    try:
        password = make_url(url).password
    except Exception:
        password = None
    return line.replace(str(password), "***") if password else line


# -- the schema (Alembic) ------------------------------------------------------------------
MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(url: str) -> None:
    """Bring the database at ``url`` to the newest schema."""
    command.upgrade(alembic_config(url), "head")


class SchemaError(RuntimeError):
    """The database schema is not the one this code needs."""


def check_schema(engine: Engine) -> None:
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaError(
            f"the database schema is at revision {current or 'none'}, this code needs {head}: "
            "run `segdial db upgrade` (with the same SEGDIAL_DATABASE_URL)"
        )
