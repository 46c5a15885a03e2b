"""API keys: no key or a wrong key gets 401, a client sees only its own conversations, and
``segdial keys create NAME`` prints a working key once while the database keeps only its hash.

Every test runs on SQLite and on PostgreSQL (``database_url``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from dialogue.service import db

INFORM = [{"act": "inform", "slot": "food", "value": "italian"}]
# Every route that needs a key, with a body that would be valid with one.
PROTECTED: tuple[tuple[str, str, dict[str, Any] | None], ...] = (
    ("POST", "/v1/conversations", {}),
    ("GET", "/v1/conversations/{id}", None),
    ("POST", "/v1/conversations/{id}/turns", {"acts": INFORM}),
    ("POST", "/v1/conversations/{id}/end", {"outcome": "success"}),
    ("GET", "/v1/policy", None),
)


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def assert_401(response: Any, fragment: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/json")
    detail = response.json()["detail"]
    assert isinstance(detail, str) and fragment in detail


def call(client: TestClient, method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str]) -> Any:
    return client.request(method, path, json=body, headers=headers)


def test_a_request_without_a_key_or_with_a_wrong_key_gets_401(api: Any, engine: Engine, stored: Any) -> None:
    cid = api.create()
    api.turn(cid, INFORM)
    before = stored(cid)
    for method, template, body in PROTECTED:
        path = template.format(id=cid)
        assert_401(call(api.client, method, path, body, {}), "missing API key")
        assert_401(call(api.client, method, path, body, {"X-API-Key": ""}), "missing API key")
        assert_401(call(api.client, method, path, body, {"X-API-Key": api.key + "x"}), "invalid API key")
        assert_401(call(api.client, method, path, body, {"X-API-Key": "sdk_" + "0" * 32}), "invalid API key")
    assert stored(cid) == before
    with db.session_factory(engine)() as session:
        mine = session.scalar(select(db.ApiKey).where(db.ApiKey.key_hash == sha256(api.key)))
        assert mine is not None
        owned = session.scalars(select(db.Conversation.id).where(db.Conversation.api_key_id == mine.id)).all()
    assert owned == [cid]  # the refused creations made nothing


def test_a_revoked_key_gets_401(api: Any, engine: Engine) -> None:
    cid = api.create()
    with db.session_factory(engine)() as session:
        session.execute(update(db.ApiKey).where(db.ApiKey.key_hash == sha256(api.key)).values(revoked=True))
        session.commit()
    assert_401(api.client.get(f"/v1/conversations/{cid}", headers=api.headers), "invalid API key")
    assert_401(api.client.post("/v1/conversations", json={}, headers=api.headers), "invalid API key")


def test_a_client_cannot_read_or_change_another_clients_conversation(
    api: Any, make_key: Callable[[str], str], make_api: Any, stored: Any
) -> None:
    cid = api.create(client_user_ref="alice")
    api.turn(cid, INFORM)
    before = stored(cid)
    other = make_api(api.client, make_key("other client"))
    attempts = [
        other.client.get(f"/v1/conversations/{cid}", headers=other.headers),
        other.post_turn(cid, {"acts": INFORM}),
        other.post_turn(cid, {"acts": INFORM, "idempotency_key": "k"}),
        other.end(cid, outcome="failure", rating=1),
    ]
    for r in attempts:
        assert r.status_code == 404, r.text
        assert r.json() == {"detail": f"no conversation {cid}"}  # the same answer as for no conversation at all
    assert stored(cid) == before
    # The owner still sees its conversation, untouched, and the other client sees its own.
    assert len(api.get(cid)["turns"]) == 1
    theirs = other.create()
    assert other.get(theirs)["turns"] == []
    assert api.client.get(f"/v1/conversations/{theirs}", headers=api.headers).status_code == 404


def test_keys_create_prints_a_key_once_that_works_and_stores_only_its_hash(
    database_url: str,
    run_cli: Callable[..., tuple[int, str, str]],
    make_app: Callable[[str], FastAPI],
    engine: Engine,
    worker: str,
) -> None:
    name = f"backend team {worker} {database_url[:6]}"
    code, out, err = run_cli(database_url, "keys", "create", name)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 1, out
    key = lines[0]
    assert key.startswith("sdk_") and len(key) > 30
    with db.session_factory(engine)() as session:
        rows = session.scalars(select(db.ApiKey).where(db.ApiKey.key_hash == sha256(key))).all()
        assert len(rows) == 1
        row = rows[0]
        stored_values = [str(getattr(row, c.key)) for c in db.ApiKey.__table__.columns]
    assert row.name == name and not row.revoked
    assert row.key_hash == sha256(key)
    assert not any(key in v or key.removeprefix("sdk_") in v for v in stored_values)

    with TestClient(make_app(database_url)) as client:
        r = client.post("/v1/conversations", json={}, headers={"X-API-Key": key})
        assert r.status_code == 201, r.text
        assert client.get(f"/v1/conversations/{r.json()['id']}", headers={"X-API-Key": key}).status_code == 200

    # A second key for the same name is a different key; the first is not shown again.
    code, again, _ = run_cli(database_url, "keys", "create", name)
    assert code == 0 and again.strip() != key and key not in again


def test_keys_create_refuses_a_blank_name(database_url: str, run_cli: Callable[..., tuple[int, str, str]]) -> None:
    code, out, err = run_cli(database_url, "keys", "create", "   ")
    assert (code, out) == (2, "")
    assert err.strip() == "error: the key needs a non-empty name"


@pytest.mark.parametrize(
    "database_url",
    [
        "sqlite",
        "postgresql",
    ],
    indirect=True,
)
def test_keys_create_with_an_overlong_name_fails_in_one_line_or_works(
    database_url: str, run_cli: Callable[..., tuple[int, str, str]], make_app: Callable[[str], FastAPI]
) -> None:
    code, out, err = run_cli(database_url, "keys", "create", "n" * 101)
    if code == 2:  # refused: one line on stderr, nothing printed
        assert out == "" and err.startswith("error: ") and len(err.strip().splitlines()) == 1
        return
    assert code == 0, err
    with TestClient(make_app(database_url)) as client:
        assert client.post("/v1/conversations", json={}, headers={"X-API-Key": out.strip()}).status_code == 201
