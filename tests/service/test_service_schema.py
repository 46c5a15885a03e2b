"""Schema and service endpoints: Alembic owns the schema, the app refuses to start on a schema that
is not current (except that the embedded SQLite default migrates itself), and the health,
readiness, metrics and OpenAPI endpoints answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from dialogue.service import db
from dialogue.service.app import create_app
from dialogue.service.settings import Settings
from metarl_core.inference import Agent

V1_PATHS = {
    "/v1/conversations": {"post"},
    "/v1/conversations/{conversation_id}": {"get"},
    "/v1/conversations/{conversation_id}/turns": {"post"},
    "/v1/conversations/{conversation_id}/end": {"post"},
    "/v1/policy": {"get"},
}
INFORM = [{"act": "inform", "slot": "food", "value": "british"}]


def execute(url: str, *statements: str) -> None:
    engine = db.make_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def revision(url: str) -> str | None:
    engine = db.make_engine(url)
    try:
        return db.current_revision(engine)
    finally:
        engine.dispose()


def assert_refuses_to_start(app: FastAPI, current: str) -> None:
    with pytest.raises(db.SchemaError) as error, TestClient(app):
        pass
    message = str(error.value)
    assert "run `segdial db upgrade`" in message
    assert f"at revision {current}" in message and db.head_revision() in message


@pytest.mark.parametrize("behind", ["old revision", "no alembic_version"])
def test_a_schema_behind_makes_startup_fail_with_a_schema_error(
    behind: str, empty_database_url: str, make_app: Callable[[str], FastAPI]
) -> None:
    url = empty_database_url
    db.upgrade(url)
    if behind == "old revision":
        execute(url, "UPDATE alembic_version SET version_num = '0000_before'")
        assert_refuses_to_start(make_app(url), "0000_before")
    elif url.startswith("postgresql"):
        execute(url, "DROP TABLE alembic_version")
        assert_refuses_to_start(make_app(url), "none")
    else:
        # SQLite without a revision counts as a new embedded database that startup migrates; over
        # tables the migration did not record, that must fail rather than serve an unknown schema.
        execute(url, "DROP TABLE alembic_version")
        with pytest.raises((db.SchemaError, sa.exc.OperationalError)), TestClient(make_app(url)):
            pass


def test_an_empty_postgresql_needs_segdial_db_upgrade_before_the_app_starts(
    postgres_scratch: Callable[[str], str],
    make_app: Callable[[str], FastAPI],
    run_cli: Callable[..., tuple[int, str, str]],
) -> None:
    url = postgres_scratch("fresh")
    assert_refuses_to_start(make_app(url), "none")
    assert revision(url) is None  # startup did not migrate PostgreSQL behind the operator's back
    code, out, err = run_cli(url, "db", "upgrade")
    assert (code, err) == (0, "")
    assert f"is at revision {db.head_revision()}" in out
    with TestClient(make_app(url)) as client:
        assert client.get("/readyz").json() == {"status": "ready"}


def test_the_embedded_sqlite_default_migrates_itself_on_startup(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    agent: Agent,
    run_cli: Callable[..., tuple[int, str, str]],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEGDIAL_DATABASE_URL", raising=False)
    settings = Settings()
    url = settings.database_url
    assert settings.is_sqlite and not (tmp_path / "segdial.db").exists()
    with TestClient(create_app(settings, agent=agent)) as client:
        assert (tmp_path / "segdial.db").is_file()
        assert revision(url) == db.head_revision()
        assert client.get("/readyz").status_code == 200
        code, key, _ = run_cli(url, "keys", "create", "embedded")
        assert code == 0
        headers = {"X-API-Key": key.strip()}
        cid = client.post("/v1/conversations", json={}, headers=headers).json()["id"]
        assert client.post(f"/v1/conversations/{cid}/turns", json={"acts": INFORM}, headers=headers).status_code == 200


def test_readyz_is_503_while_the_schema_is_behind(empty_database_url: str, make_app: Callable[[str], FastAPI]) -> None:
    url = empty_database_url
    db.upgrade(url)
    with TestClient(make_app(url)) as client:
        assert client.get("/readyz").json() == {"status": "ready"}
        execute(url, "UPDATE alembic_version SET version_num = '0000_before'")
        r = client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["status"] == "not ready" and "segdial db upgrade" in r.json()["reason"]
        assert client.get("/healthz").status_code == 200  # up, just not ready
        execute(url, f"UPDATE alembic_version SET version_num = '{db.head_revision()}'")
        assert client.get("/readyz").status_code == 200


def test_health_readiness_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}
    spec = client.get("/openapi.json").json()
    paths = {path: set(ops) for path, ops in spec["paths"].items()}
    missing = {path: ops - paths.get(path, set()) for path, ops in V1_PATHS.items() if ops - paths.get(path, set())}
    assert missing == {}, sorted(paths)
    schemes = spec["components"]["securitySchemes"]
    assert any(s.get("in") == "header" and s.get("name") == "X-API-Key" for s in schemes.values())
    assert "ReplyOut" in spec["components"]["schemas"]


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


def test_metrics_count_turns_and_conversations(api: Any) -> None:
    page = api.client.get("/metrics")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
    assert metric(page.text, "segdial_turns_total") == 0.0
    cid = api.create()
    api.turn(cid, INFORM)
    api.turn(cid, INFORM, idempotency_key="once")
    api.turn(cid, INFORM, idempotency_key="once")  # a replay is not a new turn
    api.post_turn(cid, {"acts": [{"act": "dance"}]})  # nor is a refused one
    text = api.client.get("/metrics").text
    assert metric(text, "segdial_turns_total") == 2.0
    assert metric(text, "segdial_conversations_total") == 1.0
    assert metric(text, "segdial_turn_latency_seconds_count") == 2.0
