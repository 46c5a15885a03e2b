"""The mapping between Rasa's view of a message and segdial's turns (dialogue/rasa/mapping.py), and
the Rasa-side helper that writes parse data for segdial acts (dialogue/rasa/webhook.py)."""

from __future__ import annotations

from typing import Any

import pytest

from dialogue.domain import Domain, load_domain
from dialogue.rasa.mapping import (
    INTENT_ACTS,
    MalformedTrackerError,
    UserMessage,
    outcome_of,
    read_message,
    reply_message,
    turn_of,
    user_acts,
)
from dialogue.rasa.webhook import RasaTracker, parse_data_of
from dialogue.service.schemas import ReplyOut
from dialogue.service.turns import USER_ACT_NAMES, parse_acts


def message(intent: str | None, entities: list[dict[str, Any]] = (), text: str | None = "words") -> UserMessage:  # type: ignore[assignment]
    return UserMessage(text=text, intent=intent, entities=list(entities), idempotency_key=None)


def acts_of(intent: str | None, *entities: dict[str, Any]) -> list[dict[str, Any]] | None:
    acts = user_acts(message(intent, list(entities)), load_domain("restaurant"))
    return None if acts is None else [a.model_dump(exclude_defaults=True) for a in acts]


@pytest.mark.parametrize(
    ("intent", "entities", "expected"),
    [
        ("greet", [], [{"act": "hello"}]),
        ("inform", [{"entity": "food", "value": "italian"}], [{"act": "inform", "slot": "food", "value": "italian"}]),
        ("inform", [{"entity": "area", "value": "Center"}], [{"act": "inform", "slot": "area", "value": "centre"}]),
        ("inform", [{"entity": "food", "value": "pizza"}], [{"act": "inform", "slot": "food", "value": "italian"}]),
        ("deny", [], [{"act": "negate"}]),
        ("deny", [{"entity": "area", "value": "south"}], [{"act": "negate", "slot": "area", "value": "south"}]),
        ("relax", [{"entity": "pricerange", "value": "dontcare"}], [{"act": "relax", "slot": "pricerange"}]),
        ("inform", [{"entity": "area", "value": "dontcare"}], [{"act": "relax", "slot": "area"}]),
        ("request", [{"entity": "requestable", "value": "phone"}], [{"act": "request", "slot": "phone"}]),
        (
            "book",
            [{"entity": "people", "value": "2"}, {"entity": "day", "value": "Friday"}],
            [{"act": "book", "slot": "people", "value": "2"}, {"act": "book", "slot": "day", "value": "friday"}],
        ),
        (
            "affirm",
            [{"entity": "food", "value": "thai"}],
            [{"act": "affirm"}, {"act": "inform", "slot": "food", "value": "thai"}],
        ),
        ("goodbye", [], [{"act": "bye"}]),
        ("stop", [], [{"act": "hangup"}]),
        ("dont_know", [{"entity": "number", "value": 3}], [{"act": "dont_know"}]),  # not segdial's entity: ignored
    ],
)
def test_intents_and_entities_map_to_acts(intent: str, entities: list[dict[str, Any]], expected: list[Any]) -> None:
    assert acts_of(intent, *entities) == expected


@pytest.mark.parametrize(
    ("intent", "entities"),
    [
        ("nlu_fallback", []),
        ("chitchat", [{"entity": "food", "value": "italian"}]),
        (None, []),
        ("inform", []),  # inform of nothing segdial knows
        ("inform", [{"entity": "food", "value": "klingon"}]),  # a value outside the ontology
        ("book", [{"entity": "time", "value": "2026-11-24T19:00:00.000+00:00"}]),  # a Duckling time
        ("request", [{"entity": "requestable", "value": "opening hours"}]),
    ],
)
def test_what_does_not_map_leaves_the_words_to_segdials_nlu(intent: str | None, entities: list[dict[str, Any]]) -> None:
    domain = load_domain("restaurant")
    assert acts_of(intent, *entities) is None
    turn = turn_of(message(intent, entities, text="cheap italian please"), domain, 2000)
    assert (turn.text, turn.acts) == ("cheap italian please", [])


def test_every_mapped_act_is_one_the_service_accepts(domain: Domain) -> None:
    assert set(INTENT_ACTS.values()) <= set(USER_ACT_NAMES)
    for intent in INTENT_ACTS:
        acts = user_acts(message(intent, [{"entity": domain.slots[0], "value": domain.values[0][0]}]), domain)
        assert acts is not None
        parse_acts(domain, [a.model_dump() for a in acts])  # raises TurnError when the service would refuse


def test_words_go_with_the_acts_unless_send_text_is_off() -> None:
    domain = load_domain("restaurant")
    m = message("inform", [{"entity": "food", "value": "thai"}], text="thai food")
    assert turn_of(m, domain, 2000).text == "thai food"
    assert turn_of(m, domain, 2000, send_text=False).text is None
    fallback = message("nlu_fallback", [], text="thai food")
    assert turn_of(fallback, domain, 2000, send_text=False).text == "thai food"  # no acts: the words are all there is
    with pytest.raises(MalformedTrackerError, match="longer than 5"):
        turn_of(m, domain, 5)


def test_intent_shortcuts_are_not_words_and_message_ids_make_retries_replay() -> None:
    tracker = RasaTracker("ann")
    tracker.user_says("/affirm", "affirm", [], message_id="abc")
    read = read_message(tracker.latest_message, tracker.events)
    assert (read.text, read.intent, read.idempotency_key) == (None, "affirm", "rasa:abc")
    no_id = {k: v for k, v in tracker.latest_message.items() if k != "message_id"}
    events = [{**e, "message_id": None} for e in tracker.events]
    key = read_message(no_id, events).idempotency_key
    assert key == f"rasa:t{tracker.events[-1]['timestamp']}"  # the user event's time stands in
    assert read_message({}, []).idempotency_key is None
    with pytest.raises(MalformedTrackerError, match="no text"):
        turn_of(message("chitchat", text=None), load_domain("restaurant"), 2000)


@pytest.mark.parametrize(
    "acts",
    [
        [{"act": "inform", "slot": "food", "value": "italian", "confidence": 0.7}],
        [{"act": "negate", "slot": "area", "value": "north", "confidence": 1.0}],
        [{"act": "relax", "slot": "pricerange"}],
        [{"act": "request", "slot": "phone"}, {"act": "request", "slot": "address"}],
        [{"act": "book", "slot": "people", "value": "4"}, {"act": "book", "slot": "time", "value": "19:00"}],
        [{"act": "affirm"}, {"act": "inform", "slot": "food", "value": "thai", "confidence": 0.9}],
        [{"act": "dont_know"}],
        [{"act": "hello"}],
        [{"act": "bye"}],
        [{"act": "hangup"}],
    ],
)
def test_parse_data_of_is_the_inverse_of_the_mapping(acts: list[dict[str, Any]]) -> None:
    intent, entities = parse_data_of(acts)
    back = user_acts(message(intent, entities), load_domain("restaurant"))
    assert back is not None
    assert sorted(a.model_dump(exclude_defaults=True).items() for a in back) == sorted(
        {k: v for k, v in a.items() if not (k == "confidence" and v == 1.0)}.items() for a in acts
    )


def _reply(act: str, slot: str | None) -> ReplyOut:
    return ReplyOut(
        conversation_id="c",
        turn_index=0,
        system_act=act,
        system_slot=slot,
        system_text="What food would you like?",
        segment="core",
        confidence=0.8,
        segment_probabilities={"core": 0.8},
        posterior_mean=[0.0],
        posterior_variance=[1.0],
        ended=False,
    )


def test_a_response_for_the_act_and_slot_replaces_the_text() -> None:
    reply = _reply("request_one", "food")
    both = {"utter_segdial_request_one_food": [], "utter_segdial_request_one": []}
    assert reply_message(reply, both) == {
        "response": "utter_segdial_request_one_food",
        "segdial_text": "What food would you like?",
    }
    assert reply_message(reply, {"utter_segdial_request_one": []})["response"] == "utter_segdial_request_one"
    assert reply_message(reply, {"utter_greet": []}) == {"text": "What food would you like?"}


@pytest.mark.parametrize(
    ("slots", "intent", "expected"),
    [
        ({}, "goodbye", ("success", None)),
        ({}, "stop", ("abandoned", None)),
        ({}, "ack", ("failure", None)),
        ({"segdial_outcome": "abandoned", "segdial_rating": 4.0}, "goodbye", ("abandoned", 4)),
    ],
)
def test_the_outcome_comes_from_the_slot_or_the_last_intent(
    slots: dict[str, Any], intent: str, expected: tuple[str, int | None]
) -> None:
    end = outcome_of(slots, intent)
    assert (end.outcome, end.rating) == expected


@pytest.mark.parametrize(
    "slots", [{"segdial_outcome": "great"}, {"segdial_rating": 7}, {"segdial_rating": 2.5}, {"segdial_rating": True}]
)
def test_a_bad_outcome_or_rating_slot_is_named(slots: dict[str, Any]) -> None:
    with pytest.raises(MalformedTrackerError, match=next(iter(slots))):
        outcome_of(slots, "goodbye")
