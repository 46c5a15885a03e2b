"""The structured-act turn path: replies with the segment read-out, the stored conversation, ending
it, and idempotent retries. Every test runs on SQLite and on PostgreSQL (``database_url``).
"""

from __future__ import annotations

import itertools
import math
from datetime import datetime
from typing import Any

from dialogue.acts import SystemAct
from metarl_core.inference import Agent

SYSTEM_ACTS = {a.name.lower() for a in SystemAct}
# A plausible user: opens with a constraint, adds one, asks for the phone number, asks to book.
TURNS: list[dict[str, Any]] = [
    {
        "text": "Hello, I need a restaurant in the centre.",
        "acts": [{"act": "inform", "slot": "area", "value": "centre"}],
    },
    {
        "text": "Italian food, cheap please.",
        "acts": [
            {"act": "inform", "slot": "food", "value": "italian", "confidence": 0.8},
            {"act": "inform", "slot": "pricerange", "value": "cheap", "confidence": 0.6},
        ],
    },
    {"acts": [{"act": "affirm"}]},
    {"text": "What is the phone?", "acts": [{"act": "request", "slot": "phone"}]},
    {
        "acts": [
            {"act": "book", "slot": "people", "value": "2"},
            {"act": "book", "slot": "day", "value": "friday"},
            {"act": "book", "slot": "time", "value": "19:00"},
        ]
    },
]
INFORM = [{"act": "inform", "slot": "food", "value": "thai"}]
BYE = [{"act": "bye"}]


def check_reply(reply: dict[str, Any], agent: Agent, conversation_id: str, turn_index: int) -> None:
    """One reply is well formed and its read-out is a distribution consistent with its summary."""
    assert reply["conversation_id"] == conversation_id
    assert reply["turn_index"] == turn_index
    assert reply["system_act"] in SYSTEM_ACTS
    assert isinstance(reply["system_text"], str) and reply["system_text"].strip()
    probs = reply["segment_probabilities"]
    assert list(probs) == agent.segments
    assert all(0.0 <= p <= 1.0 for p in probs.values())
    assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-6)
    assert reply["segment"] == max(probs, key=probs.__getitem__)
    assert reply["confidence"] == probs[reply["segment"]]
    assert len(reply["posterior_mean"]) == len(reply["posterior_variance"]) == agent.latent_dim
    assert all(math.isfinite(m) for m in reply["posterior_mean"])
    assert all(0.0 < v <= 1.0 for v in reply["posterior_variance"])


def test_turns_get_replies_with_a_segment_read_out_and_the_conversation_keeps_them(api: Any, agent: Agent) -> None:
    cid = api.create(client_user_ref="user-42")
    replies = []
    for i, body in enumerate(TURNS):
        reply = api.turn(cid, **body)
        if reply["ended"]:  # the policy may end early; then the rest of the script is not sent
            break
        check_reply(reply, agent, cid, i)
        replies.append(reply)
    assert len(replies) >= 3
    # Every turn adds evidence: the posterior variance shrinks in every dimension, turn after turn.
    for before, after in itertools.pairwise(replies):
        assert all(a < b for a, b in zip(after["posterior_variance"], before["posterior_variance"], strict=True))

    conv = api.get(cid)
    assert conv["id"] == cid and conv["domain"] == "restaurant" and conv["client_user_ref"] == "user-42"
    assert conv["ended_at"] is None and conv["outcome"] is None and conv["rating"] is None
    assert (conv["segment"], conv["confidence"]) == (replies[-1]["segment"], replies[-1]["confidence"])
    assert [t["turn_index"] for t in conv["turns"]] == list(range(len(replies)))
    for turn, reply, body in zip(conv["turns"], replies, TURNS, strict=False):
        assert turn["reply"] == reply
        assert turn["user_text"] == body.get("text")
        assert [a["act"] for a in turn["user_acts"]] == [a["act"] for a in body["acts"]]
        assert turn["latency_ms"] >= 0.0


def test_ending_records_the_outcome_and_closes_the_conversation(api: Any) -> None:
    cid = api.create()
    api.turn(cid, INFORM)
    for bad in ({"outcome": "great"}, {"outcome": "success", "rating": 0}, {"outcome": "success", "rating": 6}, {}):
        assert api.end(cid, **bad).status_code == 422
    r = api.end(cid, outcome="success", rating=4)
    assert r.status_code == 200, r.text
    assert r.json() == {"id": cid, "outcome": "success", "rating": 4}
    conv = api.get(cid)
    assert (conv["outcome"], conv["rating"]) == ("success", 4)
    assert datetime.fromisoformat(conv["ended_at"]) >= datetime.fromisoformat(conv["created_at"])

    after = api.post_turn(cid, {"acts": INFORM})
    assert after.status_code == 409 and "has ended" in after.json()["detail"]
    again = api.end(cid, outcome="failure", rating=1)
    assert again.status_code == 409 and "already has an outcome" in again.json()["detail"]
    conv_after = api.get(cid)
    assert (conv_after["outcome"], conv_after["rating"], len(conv_after["turns"])) == ("success", 4, 1)
    assert conv_after["ended_at"] == conv["ended_at"]


def test_a_user_bye_ends_the_conversation_and_the_outcome_can_still_be_recorded(api: Any, agent: Agent) -> None:
    cid = api.create()
    first = api.turn(cid, INFORM)
    bye = api.turn(cid, BYE, text="thanks, bye")
    assert bye["ended"] is True and bye["system_act"] == "bye" and bye["turn_index"] == 1
    # The user's goodbye adds no evidence about the user: the read-out stays where it was.
    assert bye["posterior_mean"] == first["posterior_mean"]
    assert bye["segment_probabilities"] == first["segment_probabilities"]
    assert api.get(cid)["ended_at"] is not None
    assert api.post_turn(cid, {"acts": INFORM}).status_code == 409
    assert api.end(cid, outcome="abandoned").json() == {"id": cid, "outcome": "abandoned", "rating": None}
    assert api.end(cid, outcome="abandoned").status_code == 409


def test_the_same_idempotency_key_returns_the_stored_reply_and_stores_one_turn(api: Any, stored: Any) -> None:
    cid = api.create()
    body = {"acts": INFORM, "text": "thai food", "idempotency_key": "turn-1"}
    first = api.post_turn(cid, body)
    second = api.post_turn(cid, body)
    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    assert first.json()["turn_index"] == 0
    row = stored(cid)
    assert row["turn_count"] == 1 and len(row["turns"]) == 1 and row["turns"][0]["idempotency_key"] == "turn-1"
    state = row["state"]

    # A new key is a new turn; a late retry of the first still gets the first reply and changes nothing.
    north = [{"act": "inform", "slot": "area", "value": "north"}]
    assert api.turn(cid, north, idempotency_key="turn-2")["turn_index"] == 1
    late = api.post_turn(cid, body)
    assert late.status_code == 200 and late.content == first.content
    changed = api.post_turn(cid, {**body, "acts": [{"act": "affirm"}]})  # same key, another body: refused
    assert changed.status_code == 422 and "different request body" in changed.json()["detail"]
    row = stored(cid)
    assert [t["idempotency_key"] for t in row["turns"]] == ["turn-1", "turn-2"] and row["turn_count"] == 2
    assert row["state"] != state  # it moved on with turn-2, not with the retries

    # Keys belong to a conversation: the same key elsewhere is a new turn there.
    other = api.create()
    assert api.turn(other, INFORM, idempotency_key="turn-1")["conversation_id"] == other


def test_a_retry_of_the_turn_that_ended_the_conversation_still_gets_its_reply(api: Any, stored: Any) -> None:
    cid = api.create()
    api.turn(cid, INFORM)
    body = {"acts": BYE, "idempotency_key": "last"}
    first = api.post_turn(cid, body)
    assert first.status_code == 200 and first.json()["ended"]
    retry = api.post_turn(cid, body)
    assert retry.status_code == 200 and retry.content == first.content
    assert len(stored(cid)["turns"]) == 2
    assert api.post_turn(cid, {"acts": BYE, "idempotency_key": "new"}).status_code == 409


def test_a_turn_with_text_only_goes_through_the_nlu_and_stores_its_acts(api: Any, agent: Agent) -> None:
    cid = api.create()
    text = "I'm looking for a place serving italian food."
    check_reply(api.turn(cid, [], text=text), agent, cid, 0)
    (turn,) = api.get(cid)["turns"]
    assert turn["user_text"] == text
    assert [(a["act"], a["slot"], a["value"]) for a in turn["user_acts"]] == [("inform", "food", "italian")]
