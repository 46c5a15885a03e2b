"""Bad input changes nothing: each bad request gets a 4xx JSON error that says what is wrong, and
the conversation's stored row and turns are exactly what they were; the next good turn still gets
the next index. Every case runs on SQLite and on PostgreSQL (``database_url``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from dialogue.service import db
from dialogue.service.app import hash_key
from dialogue.service.settings import Settings

MAX_TEXT_CHARS: int = Settings.model_fields["max_text_chars"].default  # the apps under test use the defaults
MAX_ACTS: int = Settings.model_fields["max_acts"].default
MAX_BODY_BYTES: int = Settings.model_fields["max_body_bytes"].default

GOOD = [{"act": "inform", "slot": "food", "value": "italian"}]

# name -> (request body, or raw bytes for a body that is not JSON; expected status; a fragment of the detail)
TURN_CASES: dict[str, tuple[Any, int, str]] = {
    "malformed JSON": (b'{"acts": [{"act": "inform",', 422, "json"),
    "body not an object": ([GOOD], 422, ""),
    "oversized text": ({"text": "x" * (MAX_TEXT_CHARS + 1), "acts": GOOD}, 422, f"longer than {MAX_TEXT_CHARS}"),
    "neither text nor acts": ({"acts": [], "idempotency_key": "k"}, 422, "needs text, structured acts, or both"),
    "unknown act type": ({"acts": [{"act": "dance"}]}, 422, "unknown act type 'dance'"),
    "act type missing": ({"acts": [{"slot": "food", "value": "italian"}]}, 422, "act"),
    "unknown slot": ({"acts": [{"act": "inform", "slot": "colour", "value": "red"}]}, 422, "unknown slot 'colour'"),
    "unknown value": ({"acts": [{"act": "inform", "slot": "food", "value": "mars"}]}, 422, "unknown value 'mars'"),
    "inform without a slot": ({"acts": [{"act": "inform", "value": "italian"}]}, 422, "needs a slot"),
    "unknown negated value": ({"acts": [{"act": "negate", "slot": "area", "value": "moon"}]}, 422, "'moon'"),
    "unknown relaxed slot": ({"acts": [{"act": "relax", "slot": "colour"}]}, 422, "'colour'"),
    "unknown requestable slot": ({"acts": [{"act": "request", "slot": "colour"}]}, 422, "'colour'"),
    "unknown booking slot": ({"acts": [{"act": "book", "slot": "colour", "value": "red"}]}, 422, "'colour'"),
    "confidence above 1": ({"acts": [{**GOOD[0], "confidence": 1.5}]}, 422, "confidence"),
    "negative confidence": ({"acts": [{**GOOD[0], "confidence": -0.1}]}, 422, "confidence"),
    "a good act then a bad one": ({"acts": [*GOOD, {"act": "dance"}]}, 422, "acts[1]"),
    "overlong idempotency key": ({"acts": GOOD, "idempotency_key": "k" * 201}, 422, "idempotency_key"),
    # Input JSON cannot encode back: the 422 must describe it without echoing it (once a 500).
    "a surrogate in the text": ({"text": "\ud800", "acts": GOOD}, 422, "unicode"),
    "a surrogate in a value": ({"acts": [{**GOOD[0], "value": "ital\udfffian"}]}, 422, "unicode"),
    "a surrogate in a slot": ({"acts": [{**GOOD[0], "slot": "\ud800"}]}, 422, "unicode"),
    "a surrogate in the idempotency key": ({"acts": GOOD, "idempotency_key": "k\ud800"}, 422, "unicode"),
    "NaN confidence": (
        b'{"acts": [{"act": "inform", "slot": "food", "value": "italian", "confidence": NaN}]}',
        422,
        "finite",
    ),
    "Infinity confidence": (b'{"acts": [{"act": "inform", "slot": "food", "confidence": Infinity}]}', 422, "finite"),
    "1e400 confidence": (
        b'{"acts": [{"act": "inform", "slot": "food", "value": "italian", "confidence": 1e400}]}',
        422,
        "finite",
    ),
    "too many acts": ({"acts": GOOD * (MAX_ACTS + 1)}, 422, f"at most {MAX_ACTS} acts"),
}


def detail_text(response: Any) -> str:
    """The error's detail: every error body is ``{"detail": "<one line>"}``."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str), body
    assert "\n" not in body["detail"] and len(body["detail"]) <= 300
    return str(body["detail"])


def post_json(api: Any, url: str, body: Any) -> Any:
    """POST ``body`` as JSON with non-ASCII escaped (a lone surrogate goes as ``\\ud800``), or raw bytes."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return api.client.post(url, content=content, headers={**api.headers, "Content-Type": "application/json"})


@pytest.fixture
def conversation(api: Any) -> str:
    """A conversation with one good turn stored (so there is state to protect)."""
    cid = api.create()
    api.turn(cid, [{"act": "inform", "slot": "area", "value": "centre"}], text="in the centre")
    return cid


def assert_unchanged_and_usable(api: Any, stored: Callable[[str], dict[str, Any]], cid: str, before: Any) -> None:
    assert stored(cid) == before
    assert api.turn(cid, GOOD)["turn_index"] == before["turn_count"]


@pytest.mark.parametrize("case", TURN_CASES)
def test_a_bad_turn_gets_a_4xx_and_changes_nothing(
    case: str, api: Any, conversation: str, stored: Callable[[str], dict[str, Any]]
) -> None:
    body, status, fragment = TURN_CASES[case]
    before = stored(conversation)
    url = f"/v1/conversations/{conversation}/turns"
    r = post_json(api, url, body)
    assert r.status_code == status, r.text
    assert fragment.lower() in detail_text(r).lower()
    assert_unchanged_and_usable(api, stored, conversation, before)


def test_a_turn_for_an_unknown_conversation_gets_404(
    api: Any, conversation: str, stored: Callable[[str], dict[str, Any]]
) -> None:
    before = stored(conversation)
    for cid in (str(uuid.uuid4()), "not-a-uuid", "x" * 100):
        r = api.post_turn(cid, {"acts": GOOD})
        assert r.status_code == 404 and detail_text(r) == f"no conversation {cid}"
        assert api.client.get(f"/v1/conversations/{cid}", headers=api.headers).status_code == 404
        assert api.end(cid, outcome="success").status_code == 404
        assert stored(cid) == {}
    assert_unchanged_and_usable(api, stored, conversation, before)


def count_conversations(engine: Engine, key: str) -> int:
    with db.session_factory(engine)() as session:
        query = select(func.count(db.Conversation.id)).join(db.ApiKey).where(db.ApiKey.key_hash == hash_key(key))
        return int(session.scalar(query) or 0)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"domain": "spaceport"}, "unknown domain 'spaceport'"),
        ({"domain": 7}, "domain"),
        ({"client_user_ref": "r" * 201}, "client_user_ref"),
        ({"client_user_ref": "\udc80"}, "unicode"),
    ],
    ids=["unknown domain", "domain not a string", "overlong client_user_ref", "a surrogate in client_user_ref"],
)
def test_a_bad_conversation_gets_422_and_is_not_created(
    body: dict[str, Any], fragment: str, api: Any, engine: Engine
) -> None:
    api.create()
    r = post_json(api, "/v1/conversations", body)
    assert r.status_code == 422, r.text
    assert fragment in detail_text(r)
    assert count_conversations(engine, api.key) == 1


@pytest.mark.parametrize(
    "database_url",
    [
        "sqlite",
        "postgresql",
    ],
    indirect=True,
)
def test_nul_characters_get_a_4xx_or_are_stored_never_a_500(
    database_url: str,
    make_app: Callable[[str], FastAPI],
    api: Any,
    conversation: str,
    stored: Callable[[str], dict[str, Any]],
) -> None:
    before = stored(conversation)
    turns, headers = f"/v1/conversations/{conversation}/turns", api.headers
    # A client that shows the server's answer (a 500 included) instead of re-raising its error.
    with TestClient(make_app(database_url), raise_server_exceptions=False) as client:
        responses = {
            "text": client.post(turns, json={"acts": GOOD, "text": "italian\x00 please"}, headers=headers),
            "idempotency key": client.post(turns, json={"acts": GOOD, "idempotency_key": "a\x00b"}, headers=headers),
            "conversation id": client.get("/v1/conversations/a%00b", headers=headers),
            "client_user_ref": client.post("/v1/conversations", json={"client_user_ref": "a\x00b"}, headers=headers),
        }
    assert {name: r.status_code for name, r in responses.items() if r.status_code >= 500} == {}
    after = stored(conversation)
    accepted = sum(r.status_code == 200 for r in list(responses.values())[:2])
    assert after["turn_count"] == before["turn_count"] + accepted


def test_a_book_act_with_an_unknown_value_gets_422_and_changes_nothing(
    api: Any, conversation: str, stored: Callable[[str], dict[str, Any]]
) -> None:
    before = stored(conversation)
    r = api.post_turn(conversation, {"acts": [{"act": "book", "slot": "people", "value": "banana"}]})
    assert r.status_code == 422, r.text
    assert "'banana'" in detail_text(r)
    assert_unchanged_and_usable(api, stored, conversation, before)
