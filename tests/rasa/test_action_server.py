"""The real action server (``segdial actions`` in its own process) answering Rasa's webhook calls.

Every test runs against SQLite and PostgreSQL. Calls are built as Rasa builds them
(``dialogue.rasa.webhook.RasaTracker``: next_action, sender_id, the tracker with latest_message,
events and slots, the example assistant's domain, version), and what the actions stored is read
straight from the database.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from dialogue.domain import load_domain
from dialogue.rasa.mapping import (
    CONFIDENCE_SLOT,
    CONVERSATION_SLOT,
    HANDOVER_SLOT,
    OUTCOME_SLOT,
    RATING_SLOT,
    SEGMENT_SLOT,
    SYSTEM_ACT_SLOT,
    read_message,
    user_acts,
)
from dialogue.rasa.webhook import RasaTracker, parse_data_of

if TYPE_CHECKING:
    from conftest import ActionServer

POLICY = "action_segdial_policy"
END = "action_segdial_end"
SEGMENTS = {"power", "core", "casual"}
ITALIAN_CHEAP = [{"entity": "food", "value": "italian"}, {"entity": "pricerange", "value": "cheap"}]


def slot_events(result: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e["value"] for e in result["events"] if e["event"] == "slot"}


def test_health_and_the_registered_actions(action_server: ActionServer) -> None:
    assert action_server.http.get("/health").json() == {"status": "ok"}
    assert {a["name"] for a in action_server.http.get("/actions").json()} == {POLICY, END}


def test_an_inform_turn_answers_sets_the_segment_slots_and_is_stored(
    action_server: ActionServer, tracker: RasaTracker
) -> None:
    tracker.user_says("I want cheap italian food", "inform", ITALIAN_CHEAP)
    r = action_server.call(tracker, POLICY)
    assert r.status_code == 200, r.text
    result = r.json()
    slots = slot_events(result)
    assert set(slots) == {CONVERSATION_SLOT, SEGMENT_SLOT, CONFIDENCE_SLOT, SYSTEM_ACT_SLOT, HANDOVER_SLOT}
    assert slots[HANDOVER_SLOT] is None
    assert slots[SEGMENT_SLOT] in SEGMENTS
    assert 1 / 3 <= slots[CONFIDENCE_SLOT] <= 1.0
    [conv] = action_server.conversations_of(tracker.sender_id)
    assert conv["id"] == slots[CONVERSATION_SLOT]
    assert (conv["segment"], conv["confidence"]) == (slots[SEGMENT_SLOT], pytest.approx(slots[CONFIDENCE_SLOT]))
    [turn] = conv["turns"]
    assert turn["user_text"] == "I want cheap italian food"
    assert turn["user_acts"] == [
        {"act": "inform", "slot": "food", "value": "italian", "confidence": 1.0},
        {"act": "inform", "slot": "pricerange", "value": "cheap", "confidence": 1.0},
    ]
    assert turn["system_act"] == slots[SYSTEM_ACT_SLOT]
    [message] = result["responses"]
    assert message["text"] == turn["system_text"] and message["text"]


def test_an_unknown_action_is_404(action_server: ActionServer, tracker: RasaTracker) -> None:
    tracker.user_says("hi", "greet", [])
    r = action_server.call(tracker, "action_does_not_exist")
    assert r.status_code == 404
    assert r.json()["action_name"] == "action_does_not_exist"
    assert action_server.conversations_of(tracker.sender_id) == []


def _call(tracker: RasaTracker, domain: dict[str, Any], /, **changes: Any) -> dict[str, Any]:
    body = tracker.action_call(POLICY, domain)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = body
        for p in parents:
            node = node[p]
        if value is _DELETE:
            del node[leaf]
        else:
            node[leaf] = value
    return body


_DELETE = object()
MALFORMED: dict[str, Any] = {
    "not JSON": b'{"next_action": "action_segdial_policy", "tracker": {',
    "a JSON list": [1, 2, 3],
    "no next_action": {"next_action": _DELETE},
    "no tracker": {"tracker": _DELETE},
    "tracker not an object": {"tracker": "u1"},
    "tracker without sender_id": {"tracker__sender_id": _DELETE},
    "sender_id not a string": {"tracker__sender_id": 17},
    "latest_message not an object": {"tracker__latest_message": "hello"},
    "entities not a list": {"tracker__latest_message__entities": {"food": "italian"}},
    "intent without a name string": {"tracker__latest_message__intent": {"name": 3}},
    "slots not an object": {"tracker__slots": ["segdial_segment"]},
    "intent-only message that maps to nothing": {
        "tracker__latest_message__text": "/chitchat",
        "tracker__latest_message__intent": {"name": "chitchat"},
    },
    "an unknown outcome in the outcome slot": {"tracker__slots__segdial_outcome": "great"},
    "a NUL character in the text": {"tracker__latest_message__text": "cheap\x00food"},
    "text longer than the service takes": {"tracker__latest_message__text": "cheap food " * 400},
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_body_is_a_json_400_and_stores_nothing(
    action_server: ActionServer, tracker: RasaTracker, rasa_domain: dict[str, Any], case: str
) -> None:
    tracker.user_says("I want cheap italian food", "inform", ITALIAN_CHEAP)
    spec = MALFORMED[case]
    if isinstance(spec, bytes):
        r = action_server.post("/webhook", content=spec)
    elif isinstance(spec, list):
        r = action_server.post("/webhook", spec)
    else:
        r = action_server.post("/webhook", _call(tracker, rasa_domain, **spec))
    assert r.status_code == 400, r.text
    assert r.json()["error"]
    assert action_server.conversations_of(tracker.sender_id) == []


def test_a_retried_call_replays_the_reply_without_a_second_turn(
    action_server: ActionServer, tracker: RasaTracker, rasa_domain: dict[str, Any]
) -> None:
    tracker.user_says("cheap italian", "inform", ITALIAN_CHEAP)
    [conv] = action_server.sent_twice(tracker, POLICY, rasa_domain)  # the first turn: no conversation slot yet
    assert len(conv["turns"]) == 1


def test_text_goes_to_segdials_nlu_when_the_intent_does_not_map(
    action_server: ActionServer, tracker: RasaTracker
) -> None:
    tracker.user_says("I would like cheap italian food in the north please", "nlu_fallback", [])
    assert action_server.call(tracker, POLICY).status_code == 200
    [conv] = action_server.conversations_of(tracker.sender_id)
    informs = {(a["slot"], a["value"]) for a in conv["turns"][0]["user_acts"] if a["act"] == "inform"}
    assert informs == {("food", "italian"), ("pricerange", "cheap"), ("area", "north")}


def test_goodbye_ends_the_conversation_records_success_and_uses_the_mapped_response(
    action_server: ActionServer, tracker: RasaTracker
) -> None:
    tracker.user_says("cheap italian", "inform", ITALIAN_CHEAP)
    assert action_server.call(tracker, POLICY).status_code == 200
    first_id = tracker.slots[CONVERSATION_SLOT]
    tracker.user_says("thanks, bye", "goodbye", [])
    r = action_server.call(tracker, POLICY)
    assert r.status_code == 200
    [message] = r.json()["responses"]
    assert message["response"] == "utter_segdial_bye"  # examples/rasa/domain.yml maps the bye act
    assert message["segdial_text"]
    assert tracker.slots[CONVERSATION_SLOT] is None
    [conv] = action_server.conversations_of(tracker.sender_id)
    assert (conv["id"], conv["outcome"], len(conv["turns"])) == (first_id, "success", 2)
    assert conv["ended_at"] is not None
    # The sender's next message starts a new conversation.
    tracker.user_says("hello again", "greet", [])
    assert action_server.call(tracker, POLICY).status_code == 200
    old, new = action_server.conversations_of(tracker.sender_id)
    assert old["id"] == first_id and new["id"] == tracker.slots[CONVERSATION_SLOT] != first_id
    assert len(new["turns"]) == 1 and new["ended_at"] is None


def test_without_a_mapped_response_the_reply_is_segdials_text(
    action_server: ActionServer, tracker: RasaTracker
) -> None:
    tracker.user_says("bye", "goodbye", [])
    r = action_server.call(tracker, POLICY, domain={"responses": {}})
    [message] = r.json()["responses"]
    assert message["response"] is None
    assert message["text"] == action_server.conversations_of(tracker.sender_id)[0]["turns"][0]["system_text"]


def test_action_segdial_end_records_the_outcome_and_rating_the_assistant_set(
    action_server: ActionServer, tracker: RasaTracker
) -> None:
    tracker.user_says("cheap italian", "inform", ITALIAN_CHEAP)
    action_server.call(tracker, POLICY)
    tracker.slots.update({OUTCOME_SLOT: "failure", RATING_SLOT: 2.0})
    tracker.user_says("can I talk to a person?", "human_handoff", [])
    r = action_server.call(tracker, END)
    assert r.status_code == 200, r.text
    assert slot_events(r.json()) == {CONVERSATION_SLOT: None, OUTCOME_SLOT: None, RATING_SLOT: None}
    [conv] = action_server.conversations_of(tracker.sender_id)
    assert (conv["outcome"], conv["rating"]) == ("failure", 2)
    assert conv["ended_at"] is not None
    # Ending again (no conversation left) changes nothing.
    assert action_server.call(tracker, END).status_code == 200
    [again] = action_server.conversations_of(tracker.sender_id)
    assert (again["outcome"], again["rating"], again["ended_at"]) == ("failure", 2, conv["ended_at"])


def test_a_conversation_slot_the_database_does_not_know_starts_a_new_conversation(
    action_server: ActionServer, tracker: RasaTracker
) -> None:
    tracker.slots[CONVERSATION_SLOT] = str(uuid.uuid4())
    tracker.user_says("cheap italian", "inform", ITALIAN_CHEAP)
    assert action_server.call(tracker, POLICY).status_code == 200
    [conv] = action_server.conversations_of(tracker.sender_id)
    assert conv["id"] == tracker.slots[CONVERSATION_SLOT]


@pytest.mark.parametrize("segment", sorted(SEGMENTS))
def test_a_simulated_user_talks_to_the_end_through_webhooks(
    action_server: ActionServer, make_tracker: Callable[[], RasaTracker], simulated_user: Any, segment: str
) -> None:
    """Each user turn goes out as Rasa's parse data (intent + entities + text); every reply is read
    back from the database and answered by the simulated user, which checks the slot the service
    named. The conversation's turns, its outcome and the segment slots must all be there."""
    domain = load_domain("restaurant")
    user = simulated_user(segment, seed=7)
    tracker = make_tracker()
    sent: list[tuple[str, list[dict[str, Any]]]] = []
    segments_seen = []
    while True:
        body = user.request()
        intent, entities = parse_data_of(body["acts"])
        tracker.user_says(body["text"], intent, entities)
        expected_acts = user_acts(read_message(tracker.latest_message, tracker.events), domain)
        assert expected_acts is not None, body
        r = action_server.call(tracker, POLICY)
        assert r.status_code == 200, r.text
        sent.append((body["text"], [a.model_dump() for a in expected_acts]))
        segments_seen.append(tracker.slots[SEGMENT_SLOT])
        [conv] = action_server.conversations_of(tracker.sender_id)
        assert len(conv["turns"]) == len(sent)
        reply = conv["turns"][-1]["reply"]
        assert reply["system_act"] == tracker.slots[SYSTEM_ACT_SLOT]
        if not user.answer(reply):
            break
    assert len(sent) >= 2
    assert [(t["user_text"], t["user_acts"]) for t in conv["turns"]] == sent
    assert all(s in SEGMENTS for s in segments_seen)
    assert conv["segment"] == segments_seen[-1]
    assert conv["ended_at"] is not None and conv["outcome"] in ("success", "failure", "abandoned")
    assert tracker.slots[CONVERSATION_SLOT] is None  # forgotten once it ended


def test_turns_not_understood_set_the_handover_slot_and_follow_up_with_the_handoff(
    action_server: ActionServer, tracker: RasaTracker
) -> None:
    results = []
    for _ in range(3):
        tracker.user_says("can you recommend a good film?", "chitchat", [])
        r = action_server.call(tracker, POLICY)
        assert r.status_code == 200, r.text
        results.append(r.json())
    handovers = [slot_events(result)[HANDOVER_SLOT] for result in results]
    assert handovers[:2] == [None, None] and "not understood" in handovers[2]
    followups = [[e["name"] for e in result["events"] if e["event"] == "followup"] for result in results]
    assert followups == [[], [], ["utter_handoff"]]  # the example assistant's domain has that response
