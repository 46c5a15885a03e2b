"""Fixtures for the Rasa action server: the real server in its own process, on SQLite and PostgreSQL.

``action_server`` starts ``segdial actions`` (``python -m segdial.cli actions``) on a free port
once per test module and database, and waits for ``/health``: loading the policy and the NLU takes
a few seconds. The database is a SQLite file of the module, or a PostgreSQL schema of the module
and pytest worker, migrated first (as ``segdial db upgrade`` would). The database helpers of
``tests/service/conftest.py`` are reused (loaded as a module of their own: test folders are not
packages).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml

from dialogue.rasa.webhook import RasaTracker
from dialogue.service import db

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "rasa"


def _load_service_helpers() -> ModuleType:
    spec = importlib.util.spec_from_file_location("service_test_helpers", ROOT / "tests" / "service" / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


service_helpers = _load_service_helpers()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A server started as a process on a free port (``{port}`` in its arguments and environment);
    ``http`` and ``post`` talk to it."""

    def __init__(self, args: list[str], env: dict[str, str], health: str, timeout: float = 120.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(env.get("TMPDIR", "/tmp")) / f"segdial-test-server-{uuid.uuid4().hex}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [part.replace("{port}", str(self.port)) for part in args],
                env={**self.base_env(), **{k: v.replace("{port}", str(self.port)) for k, v in env.items()}},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        self.http = httpx.Client(base_url=self.url, timeout=60.0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                pytest.fail(f"{' '.join(args)} exited with {self.proc.returncode}:\n{self.output()}", pytrace=False)
            try:
                if self.http.get(health, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        pytest.fail(f"{' '.join(args)} did not answer {health} within {timeout:.0f} s:\n{self.output()}", pytrace=False)

    @staticmethod
    def base_env() -> dict[str, str]:
        """The environment of a test's server processes (one thread, quiet logs), before their own settings."""
        return {**os.environ, "OMP_NUM_THREADS": "1", "SEGDIAL_LOG_LEVEL": "warning"}

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def post(self, path: str, body: Any = None, content: bytes | None = None) -> httpx.Response:
        if content is not None:
            return self.http.post(path, content=content, headers={"content-type": "application/json"})
        return self.http.post(path, json=body)

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.unlink(missing_ok=True)


class ActionServer(ServerProcess):
    """``segdial actions`` on a database; ``call`` runs an action for a ``RasaTracker`` as Rasa would."""

    def __init__(self, database_url: str, env: dict[str, str] | None = None, command: list[str] | None = None) -> None:
        self.database_url = database_url
        self.engine = db.make_engine(database_url)
        super().__init__(
            command or [sys.executable, "-m", "segdial.cli", "actions", "--port", "{port}"],
            {"SEGDIAL_DATABASE_URL": database_url, **(env or {})},
            "/health",
        )

    def call(self, tracker: RasaTracker, action: str, domain: dict[str, Any] | None = None) -> httpx.Response:
        """POST the action call; on 200 the returned events are applied to ``tracker``."""
        r = self.post("/webhook", tracker.action_call(action, example_domain() if domain is None else domain))
        if r.status_code == 200:
            tracker.apply(action, r.json())
        return r

    def sent_twice(self, tracker: RasaTracker, action: str, domain: dict[str, Any]) -> list[dict[str, Any]]:
        """POST the same call twice, as Rasa does when it retries; both must get the same 200 answer.

        Returns the sender's stored conversations afterwards."""
        body = tracker.action_call(action, domain)
        first, again = self.post("/webhook", body), self.post("/webhook", body)
        assert first.status_code == again.status_code == 200, (first.text, again.text)
        assert again.json() == first.json()
        return self.conversations_of(tracker.sender_id)

    def conversations_of(self, sender_id: str) -> list[dict[str, Any]]:
        """Every stored conversation of a Rasa sender (oldest first), with its turns."""
        with self.engine.connect() as conn:
            ids = conn.scalars(
                sa.select(db.Conversation.id)
                .where(db.Conversation.client_user_ref == sender_id)
                .order_by(db.Conversation.created_at)
            ).all()
        return [service_helpers.stored_conversation(self.engine, i) for i in ids]

    def stop(self) -> None:
        super().stop()
        self.engine.dispose()


def example_domain() -> dict[str, Any]:
    """The example assistant's domain, as Rasa sends it in action calls."""
    return dict(yaml.safe_load((EXAMPLE / "domain.yml").read_text()))


def new_tracker() -> RasaTracker:
    """A fresh Rasa conversation (a new sender) with the example domain's slots."""
    return RasaTracker(f"rasa-user-{uuid.uuid4().hex[:12]}", slots=example_domain()["slots"])


@pytest.fixture(scope="session")
def worker() -> str:
    """The pytest-xdist worker id (``gw0``, ...) or ``main`` without xdist."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="module", params=service_helpers.DATABASES)
def action_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, worker: str
) -> Iterator[ActionServer]:
    """``segdial actions`` on a fresh SQLite file or PostgreSQL schema, for this module."""
    module = Path(str(request.module.__file__)).stem.removeprefix("test_")[:20]
    schema = f"segdial_rasa_{worker}_{module}"
    if request.param == "sqlite":
        url = service_helpers.sqlite_file_url(tmp_path_factory.mktemp("rasa"))
    else:
        url = service_helpers.reset_postgres_schema(schema)
        db.upgrade(url)
    server = ActionServer(url)
    yield server
    server.stop()
    if request.param == "postgresql":
        service_helpers.drop_postgres_schema(schema)


@pytest.fixture
def tracker() -> RasaTracker:
    """A fresh Rasa conversation (a new sender) with the example domain's slots."""
    return new_tracker()


@pytest.fixture
def make_tracker() -> Callable[[], RasaTracker]:
    """``make_tracker()``: another fresh Rasa conversation."""
    return new_tracker


@pytest.fixture
def rasa_domain() -> dict[str, Any]:
    """The example assistant's domain as Rasa sends it."""
    return example_domain()


@pytest.fixture(scope="session")
def simulated_user() -> type:
    """``simulated_user(segment, seed)``: the service tests' simulated user (answers replies, checks their slot)."""
    return service_helpers.SimulatedUser


@pytest.fixture(scope="session")
def server_process() -> type[ServerProcess]:
    """``server_process(args, env, health)``: see ``ServerProcess``."""
    return ServerProcess


@pytest.fixture(scope="session")
def action_server_of() -> type[ActionServer]:
    """``action_server_of(database_url, env=None, command=None)``: another action server (see ``ActionServer``)."""
    return ActionServer
