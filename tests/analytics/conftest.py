"""Fixtures for the analytics tests: real databases (SQLite and PostgreSQL), simulated logs, the policy.

The database helpers are the service tests' own (``tests/service/conftest.py``), loaded from that
file, so both suites make, migrate and drop their databases the same way; the analytics tests use
PostgreSQL schemas of their own (``segdial_test_analytics_<worker>_<name>``). Nothing is mocked.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from dialogue.service import db
from dialogue.service.settings import DEFAULT_MODEL
from metarl_core.inference import Agent
from segdial.reporting import simulate_to_database


def _service_fixtures() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "service" / "conftest.py"
    spec = importlib.util.spec_from_file_location("segdial_service_test_helpers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


service = _service_fixtures()
DATABASES = service.DATABASES
SIMULATED_PER_SEGMENT = 60


@pytest.fixture(scope="session")
def helpers() -> ModuleType:
    """The service tests' helpers (``Api``, ``SimulatedUser``, ``make_settings``, ``new_key``, ...)."""
    return service


@pytest.fixture(scope="session")
def agent() -> Agent:
    return Agent.load(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture
def fresh_database(tmp_path: Path, worker: str) -> Iterator[Callable[[str, str], str]]:
    """``fresh_database(kind, name)``: a new database at the newest schema (kind: sqlite or postgresql)."""
    schemas: list[str] = []

    def make(kind: str, name: str) -> str:
        if kind == "sqlite":
            url = service.sqlite_file_url(tmp_path, f"{name}.db")
        else:
            schema = f"segdial_test_analytics_{worker}_{name}"
            schemas.append(schema)
            url = service.reset_postgres_schema(schema)
        db.upgrade(url)
        return str(url)

    yield make
    for schema in schemas:
        service.drop_postgres_schema(schema)


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, fresh_database: Callable[[str, str], str]) -> str:
    """An empty database at the newest schema: a SQLite file, then a PostgreSQL schema."""
    return fresh_database(request.param, "db")


@pytest.fixture(scope="session")
def simulated_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite database of simulated users of the shipped policy (made once per session)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('simulated') / 'simulation.db'}"
    simulate_to_database(DEFAULT_MODEL, url, SIMULATED_PER_SEGMENT, seed=5, batch=30)
    return url
