"""Fixtures for the HTTP service: the policy (loaded once), real databases, apps, keys and users.

Every test that touches the database runs twice through ``database_url``: on a SQLite file in the
test's temporary folder and on the PostgreSQL server of the machine. PostgreSQL tests work in a
schema of their own per pytest process (``segdial_test_<worker>``, chosen with ``search_path``),
dropped and migrated afresh at session start, so parallel workers (``-n 2``) never see each
other's tables. Nothing is mocked: the apps are ``create_app(settings, agent=agent)`` behind a
``TestClient`` whose context runs the real lifespan.

Test modules are not packages, so the helpers they share (``Api``, ``SimulatedUser``) are served
as fixtures from here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from dialogue.acts import SystemAct, UserTurn
from dialogue.service import db
from dialogue.service.app import create_app, create_key
from dialogue.service.settings import DEFAULT_MODEL, Settings
from metarl_core.inference import Agent
from simulators.env import SegmentDialogueEnv

POSTGRES_URL = os.environ.get("SEGDIAL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
DATABASES: tuple[str, ...] = ("sqlite", "postgresql")


def postgres_schema_url(schema: str) -> str:
    """``POSTGRES_URL`` with its ``search_path`` set to ``schema`` (tables and alembic_version live there)."""
    sep = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{sep}options={quote(f'-csearch_path={schema}', safe='')}"


def reset_postgres_schema(schema: str) -> str:
    """Drop ``schema`` with everything in it, create it empty and return a URL that works in it."""
    engine = sa.create_engine(POSTGRES_URL)
    problem = None
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as e:
        problem = f"{type(e.orig or e).__name__}: {str(e.orig or e).strip().splitlines()[0]}"
    finally:
        engine.dispose()
    if problem:
        pytest.fail(
            f"PostgreSQL is unreachable at {POSTGRES_URL} ({problem}). The service tests need it: "
            "start the server (CI does) or point SEGDIAL_TEST_POSTGRES_URL at one.",
            pytrace=False,
        )
    return postgres_schema_url(schema)


def drop_postgres_schema(schema: str) -> None:
    engine = sa.create_engine(POSTGRES_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture(scope="session")
def worker() -> str:
    """The pytest-xdist worker id (``gw0``, ...) or ``main`` without xdist."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def agent() -> Agent:
    """The shipped policy, loaded once per session and handed to every app."""
    return Agent.load(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def postgres_url(worker: str) -> Iterator[str]:
    """A clean, migrated PostgreSQL schema for this session (fails clearly if the server is down)."""
    schema = f"segdial_test_{worker}"
    url = reset_postgres_schema(schema)
    db.upgrade(url)
    yield url
    drop_postgres_schema(schema)


@pytest.fixture
def postgres_scratch(worker: str) -> Iterator[Callable[[str], str]]:
    """``scratch(name)``: an empty PostgreSQL schema of this test (no tables) and its URL."""
    made: list[str] = []

    def scratch(name: str) -> str:
        schema = f"segdial_test_{worker}_{name}"
        made.append(schema)
        return reset_postgres_schema(schema)

    yield scratch
    for schema in made:
        drop_postgres_schema(schema)


def sqlite_file_url(folder: Path, name: str = "segdial.db") -> str:
    return f"sqlite:///{folder / name}"


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database at the newest schema: a fresh SQLite file, or the session's PostgreSQL schema."""
    if request.param == "sqlite":
        url = sqlite_file_url(tmp_path)
        db.upgrade(url)
        return url
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(params=DATABASES)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_scratch: Callable[[str], str]) -> str:
    """A database without any table: a new SQLite file, or an empty PostgreSQL schema."""
    if request.param == "sqlite":
        return sqlite_file_url(tmp_path, "empty.db")
    return postgres_scratch("empty")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on ``database_url`` for looking at what the service stored."""
    eng = db.make_engine(database_url)
    yield eng
    eng.dispose()


def make_settings(url: str) -> Settings:
    """The settings of an app under test: ``url``, and the documented defaults for everything else."""
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    return Settings(**{**defaults, "database_url": url})


@pytest.fixture(scope="session")
def make_app(agent: Agent) -> Callable[[str], FastAPI]:
    """``make_app(url)``: a new app instance on ``url`` sharing the session's policy."""

    def make(url: str) -> FastAPI:
        return create_app(make_settings(url), agent=agent)

    return make


@pytest.fixture
def client(make_app: Callable[[str], FastAPI], database_url: str) -> Iterator[TestClient]:
    """A started app (lifespan run) on ``database_url``."""
    with TestClient(make_app(database_url)) as c:
        yield c


def new_key(url: str, name: str) -> str:
    """Create an API key in the database at ``url`` (the way ``segdial keys create`` does)."""
    eng = db.make_engine(url)
    try:
        with db.session_factory(eng)() as session:
            return create_key(session, name)
    finally:
        eng.dispose()


@pytest.fixture
def make_key(database_url: str) -> Callable[[str], str]:
    """``make_key(name)``: a new API key in ``database_url``."""
    return lambda name: new_key(database_url, name)


def stored_conversation(engine: Engine, conversation_id: str) -> dict[str, Any]:
    """Everything stored about a conversation (its row and its turns), read straight from the database."""
    with db.session_factory(engine)() as session:
        conv = session.get(db.Conversation, conversation_id)
        if conv is None:
            return {}
        row = {c.name: getattr(conv, c.key) for c in db.Conversation.__table__.columns}
        row["turns"] = [{c.name: getattr(t, c.key) for c in db.Turn.__table__.columns} for t in conv.turns]
        return row


@pytest.fixture
def stored(engine: Engine) -> Callable[[str], dict[str, Any]]:
    """``stored(conversation_id)``: see ``stored_conversation`` (empty when there is no such row)."""
    return lambda conversation_id: stored_conversation(engine, conversation_id)


@pytest.fixture
def run_cli(segdial: Callable[..., tuple[int, str, str]]) -> Callable[..., tuple[int, str, str]]:
    """``run_cli(database_url, *args)``: ``segdial ARGS`` in-process on that database (see ``segdial``)."""
    return lambda url, *args: segdial(*args, env={"SEGDIAL_DATABASE_URL": url})


class Api:
    """One client's view of the service: its key, and shortcuts for the /v1 routes."""

    def __init__(self, client: TestClient, key: str) -> None:
        self.client = client
        self.key = key
        self.headers = {"X-API-Key": key}

    def create(self, **body: Any) -> str:
        r = self.client.post("/v1/conversations", json=body, headers=self.headers)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def post_turn(self, conversation_id: str, body: dict[str, Any]) -> Any:
        """POST a turn; returns the raw response (status not checked)."""
        return self.client.post(f"/v1/conversations/{conversation_id}/turns", json=body, headers=self.headers)

    def turn(self, conversation_id: str, acts: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        """POST a turn that must succeed; returns the reply."""
        r = self.post_turn(conversation_id, {"acts": acts, **extra})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def get(self, conversation_id: str) -> dict[str, Any]:
        r = self.client.get(f"/v1/conversations/{conversation_id}", headers=self.headers)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def end(self, conversation_id: str, **body: Any) -> Any:
        return self.client.post(f"/v1/conversations/{conversation_id}/end", json=body, headers=self.headers)


@pytest.fixture
def api(client: TestClient, make_key: Callable[[str], str], request: pytest.FixtureRequest) -> Api:
    """A client of the started app with a fresh key of its own."""
    return Api(client, make_key(f"test {request.node.name}"[:100]))


@pytest.fixture
def api_with(agent: Agent, database_url: str, make_key: Callable[[str], str]) -> Iterator[Callable[..., Api]]:
    """``api_with(**settings)``: a client of a started app on ``database_url`` with those settings changed."""
    with contextlib.ExitStack() as stack:

        def make(**changes: Any) -> Api:
            settings = make_settings(database_url).model_copy(update=changes)
            client = stack.enter_context(TestClient(create_app(settings, agent=agent)))
            return Api(client, make_key("settings under test"))

        yield make


@pytest.fixture
def make_api() -> Callable[[TestClient, str], Api]:
    """``make_api(client, key)``: another client view (a second key, or a second app instance)."""
    return Api


# -- simulated users over HTTP -------------------------------------------------------------------
class _StyledEnv(SegmentDialogueEnv):
    """The simulators' environment, also reporting the style (terse, plain, chatty) of each user turn."""

    def _get_info(self, turn: UserTurn, observed: list[tuple[int, int, float]], style: int, success: bool) -> Any:
        info = super()._get_info(turn, observed, style, success)
        info["style"] = style
        return info


def turn_body(info: dict[str, Any], text: str = "utterance") -> dict[str, Any]:
    """The API request of a simulated user's turn: structured acts as the NLU heard them, and the
    user's own words (``text="utterance"``, from which the service reads the register)."""
    name = info["user_act"].lower()
    acts: list[dict[str, Any]]
    if info["nlu_informs"]:
        acts = [{"act": name, "slot": s, "value": v, "confidence": c} for s, v, c in info["nlu_informs"]]
    elif name == "request":
        acts = [{"act": "request", "slot": r} for r in info["user_requests"]] or [{"act": "request"}]
    elif name == "book" and info["user_booking"]:
        acts = [{"act": "book", "slot": s, "value": v} for s, v in info["user_booking"].items()]
    else:
        acts = [{"act": name}]
    body: dict[str, Any] = {"acts": acts}
    assert text == "utterance", f"unknown text mode {text!r}"
    body["text"] = info["user_utterance"]
    return body


class SimulatedUser:
    """A simulated user of one segment, answering the service's replies instead of a policy's acts.

    ``SegmentDialogueEnv`` keeps the user and its own copy of the system-side tracker; each reply's
    ``system_act`` is fed to ``env.step`` and the user's answer becomes the next request. The env's
    tracker sees the same user acts as the service's, so the slot the service names must be the
    one the env's tracker picks for the same act (checked on every reply).
    """

    def __init__(self, segment: str, seed: int, text: str = "utterance", domain: str = "restaurant") -> None:
        self.env = _StyledEnv(domain, segments=[segment])
        self.text = text
        _, self.info = self.env.reset(seed=seed)
        self.done = False

    def request(self) -> dict[str, Any]:
        """The body of the user's current turn."""
        return turn_body(self.info, self.text)

    def answer(self, reply: dict[str, Any]) -> bool:
        """Hear the service's reply; False when the dialogue is over (no further user turn)."""
        if reply["ended"] or self.done:
            self.done = True
            return False
        act = SystemAct[reply["system_act"].upper()]
        target = self.env.state.target_slot(act)
        expected = self.env.domain.slots[target] if target >= 0 else None
        assert reply["system_slot"] == expected, (reply, expected)
        _, _, terminated, truncated, self.info = self.env.step(act)
        self.done = terminated or truncated
        return True


@pytest.fixture(scope="session")
def simulated_user() -> type[SimulatedUser]:
    """``simulated_user(segment, seed, text="utterance")``: see ``SimulatedUser``."""
    return SimulatedUser
