"""The limits of the settings, enforced: turns a conversation, acts a turn, bytes a body, who reads
``/metrics``, and an idempotency key that must come with the same body. Every test runs on SQLite
and on PostgreSQL (``database_url``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

ASK = [{"act": "request", "slot": "phone"}]  # a request alone never ends a conversation
GOOD = [{"act": "inform", "slot": "food", "value": "italian"}]


def test_the_turn_at_the_limit_ends_with_a_handover_and_later_turns_get_409(
    api_with: Callable[..., Any], stored: Callable[[str], dict[str, Any]]
) -> None:
    api = api_with(max_turns=4)
    cid = api.create()
    replies = [api.turn(cid, ASK) for _ in range(4)]
    assert [r["ended"] for r in replies] == [False, False, False, True]
    last = replies[-1]
    assert last["handover"] is True and last["system_act"] == "bye"
    assert last["handover_reason"] == "the conversation reached its limit of 4 turns"
    r = api.post_turn(cid, {"acts": ASK})
    assert r.status_code == 409 and r.json() == {"detail": f"conversation {cid} has ended"}
    row = stored(cid)
    assert row["turn_count"] == 4 and len(row["turns"]) == 4 and row["ended_at"] is not None


def test_a_conversation_stored_beyond_a_lowered_limit_gets_409(api_with: Callable[..., Any]) -> None:
    before = api_with(max_turns=10)
    cid = before.create()
    for _ in range(3):
        before.turn(cid, ASK)
    after = api_with(max_turns=2)
    r = after.client.post(f"/v1/conversations/{cid}/turns", json={"acts": ASK}, headers=before.headers)
    assert r.status_code == 409 and "limit of 2 turns" in r.json()["detail"]


def test_acts_a_turn_are_limited(api_with: Callable[..., Any], stored: Callable[[str], dict[str, Any]]) -> None:
    api = api_with(max_acts=3)
    cid = api.create()
    assert api.turn(cid, GOOD * 3)["turn_index"] == 0
    r = api.post_turn(cid, {"acts": GOOD * 4})
    assert r.status_code == 422 and r.json() == {"detail": "a turn carries at most 3 acts, got 4"}
    assert stored(cid)["turn_count"] == 1
    spec = api.client.get("/openapi.json").json()
    assert spec["components"]["schemas"]["TurnIn"]["properties"]["acts"]["maxItems"] == 3


def test_a_body_over_the_limit_gets_413_before_it_is_read(
    api_with: Callable[..., Any], stored: Callable[[str], dict[str, Any]]
) -> None:
    api = api_with(max_body_bytes=4096)
    cid = api.create()
    url = f"/v1/conversations/{cid}/turns"
    big = json.dumps({"acts": GOOD * 100}).encode()
    assert len(big) > 4096
    r = api.client.post(url, content=big, headers={**api.headers, "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json() == {"detail": "the request body is larger than 4096 bytes"}

    def chunks() -> Any:  # no Content-Length: counted as it streams
        yield big[:2000]
        yield big[2000:]

    r = api.client.post(url, content=chunks(), headers={**api.headers, "Content-Type": "application/json"})
    assert r.status_code == 413
    assert stored(cid)["turn_count"] == 0
    assert api.turn(cid, GOOD)["turn_index"] == 0  # a body under the limit goes through


def test_an_idempotency_key_reused_with_another_body_gets_422(
    api: Any, stored: Callable[[str], dict[str, Any]]
) -> None:
    cid = api.create()
    first = api.turn(cid, GOOD, idempotency_key="k1")
    assert api.turn(cid, GOOD, idempotency_key="k1") == first  # the same body: the stored reply
    other = api.post_turn(
        cid, {"acts": [{"act": "inform", "slot": "food", "value": "british"}], "idempotency_key": "k1"}
    )
    assert other.status_code == 422
    assert other.json() == {"detail": "idempotency key 'k1' was used before with a different request body"}
    with_text = api.post_turn(cid, {"acts": GOOD, "text": "italian", "idempotency_key": "k1"})
    assert with_text.status_code == 422
    row = stored(cid)
    assert row["turn_count"] == 1 and row["turns"][0]["request_hash"] is not None
    assert api.turn(cid, GOOD)["turn_index"] == 1  # a turn without a key is a new turn


def test_metrics_are_public_by_default_and_need_a_key_when_not(api_with: Callable[..., Any]) -> None:
    public = api_with()
    assert public.client.get("/metrics").status_code == 200
    private = api_with(metrics_public=False)
    r = private.client.get("/metrics")
    assert r.status_code == 401 and "SEGDIAL_METRICS_PUBLIC" in r.json()["detail"]
    assert private.client.get("/metrics", headers={"X-API-Key": "sdk_wrong"}).status_code == 401
    page = private.client.get("/metrics", headers=private.headers)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
    spec = private.client.get("/openapi.json").json()["paths"]["/metrics"]["get"]
    assert "security" in spec and "401" in spec["responses"]
    assert "text/plain; version=0.0.4" in spec["responses"]["200"]["content"]
