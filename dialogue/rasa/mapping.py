"""Rasa's view of a user message -> a segdial turn, and segdial's reply -> Rasa responses and slots.

Intents map to segdial's user acts; entities named as the domain's slots carry the values:

| Rasa intent                          | segdial act | entities used                                     |
|--------------------------------------|-------------|---------------------------------------------------|
| ``greet`` / ``hello``                | hello       |                                                   |
| ``inform``                           | inform      | informable slots (``area``, ``food``, ...)         |
| ``request``                          | request     | ``requestable`` (value ``phone``, ``address``, ...)|
| ``affirm``                           | affirm      |                                                   |
| ``deny`` / ``negate``                | negate      | informable slots: "no, X" (the corrected value)   |
| ``dont_know``                        | dont_know   |                                                   |
| ``confused``                         | confused    |                                                   |
| ``ack``                              | ack         |                                                   |
| ``book``                             | book        | booking slots (``people``, ``day``, ``time``)      |
| ``relax``                            | relax       | an informable slot with the value ``dontcare``    |
| ``goodbye`` / ``bye``                | bye         |                                                   |
| ``stop`` / ``hangup``                | hangup      |                                                   |

With any intent, an informable-slot entity also informs its value (``dontcare`` relaxes the slot),
a booking-slot entity gives a booking detail and a ``requestable`` entity asks for that field.
Values are matched to the ontology (case and the domain's synonyms are forgiven). When the intent
is not in the table (``nlu_fallback``, ``out_of_scope``, ...), when ``inform`` comes without a slot
entity, or when an entity's value is not in the ontology, no acts are sent: the user's text goes
alone and segdial's own NLU reads it. The text is sent with the acts too (segdial reads the
user's register, terse to chatty, from it: one sentence-encoder pass) unless
``SEGDIAL_RASA_SEND_TEXT=false``; Rasa's ``/intent`` shortcuts are never sent, they are not words.

The reply is sent as text, or as the assistant's own response where its domain has one for the
system act: ``utter_segdial_<act>_<slot>`` first, then ``utter_segdial_<act>`` (the response can
use ``{segdial_text}``, segdial's own sentence). The actions set the slots named below.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from dialogue.domain import Domain
from dialogue.service.schemas import EndIn, ReplyOut, TurnIn, UserActIn
from dialogue.service.turns import USER_ACT_NAMES

SEGMENT_SLOT = "segdial_segment"
CONFIDENCE_SLOT = "segdial_confidence"
CONVERSATION_SLOT = "segdial_conversation_id"
SYSTEM_ACT_SLOT = "segdial_system_act"
HANDOVER_SLOT = "segdial_handover"  # why the user should go to a person, or null
HANDOVER_RESPONSE = "utter_handoff"  # followed up with when segdial asks for a person and the domain has it
OUTCOME_SLOT = "segdial_outcome"
RATING_SLOT = "segdial_rating"
REQUESTABLE_ENTITY = "requestable"
RESPONSE_PREFIX = "utter_segdial_"
DONTCARE = "dontcare"
OUTCOMES = ("success", "failure", "abandoned")

# Rasa's customary intent names, and segdial's own act names, which are intents too.
INTENT_ACTS: dict[str, str] = {
    "greet": "hello",
    "deny": "negate",
    "goodbye": "bye",
    "stop": "hangup",
    **{name: name for name in USER_ACT_NAMES},
}


class MalformedTrackerError(ValueError):
    """A tracker (or a slot the assistant set) that the actions cannot use; the message says why."""


@dataclass(frozen=True)
class UserMessage:
    """The parts of Rasa's latest user message that make a segdial turn."""

    text: str | None  # the user's words; None for a ``/intent`` shortcut or an empty message
    intent: str | None
    entities: list[dict[str, Any]]
    idempotency_key: str | None  # from the message id (or the user event's timestamp): a retry replays


def read_message(latest_message: Any, events: Any) -> UserMessage:
    """Check and read ``tracker.latest_message`` (Rasa's parse data); MalformedTrackerError names what is wrong."""
    if latest_message is None:
        latest_message = {}
    if not isinstance(latest_message, Mapping):
        raise MalformedTrackerError("tracker.latest_message must be an object")
    if not isinstance(events, list):
        raise MalformedTrackerError("tracker.events must be a list")
    text = latest_message.get("text")
    if text is not None and not isinstance(text, str):
        raise MalformedTrackerError("tracker.latest_message.text must be a string")
    intent = latest_message.get("intent") or {}
    if not isinstance(intent, Mapping) or not isinstance(intent.get("name", ""), str | None):
        raise MalformedTrackerError("tracker.latest_message.intent must be an object with a string name")
    entities = latest_message.get("entities") or []
    if not isinstance(entities, list) or not all(isinstance(e, Mapping) for e in entities):
        raise MalformedTrackerError("tracker.latest_message.entities must be a list of objects")
    words = text.strip() if text else ""
    return UserMessage(
        text=text if words and not words.startswith("/") else None,
        intent=intent.get("name") or None,
        entities=[dict(e) for e in entities],
        idempotency_key=_idempotency_key(latest_message, events),
    )


def _idempotency_key(latest_message: Mapping[str, Any], events: list[Any]) -> str | None:
    ident = latest_message.get("message_id")
    if not ident:
        user_events = [e for e in events if isinstance(e, Mapping) and e.get("event") == "user"]
        if user_events:
            last = user_events[-1]
            ident = last.get("message_id") or (f"t{last['timestamp']}" if last.get("timestamp") is not None else None)
    if not ident:
        return None
    key = f"rasa:{ident}"
    return key if len(key) <= 200 else "rasa:" + hashlib.sha256(str(ident).encode()).hexdigest()


def canonical_value(domain: Domain, values: Collection[str], value: Any) -> str | None:
    """``value`` as the ontology names it (case and synonyms forgiven), or None when it is not one of ``values``."""
    name = str(value).strip().lower() if value is not None else ""
    if name in values:
        return name
    return next((v for v in values if name in domain.synonyms.get(v, ())), None)


def _confidence(entity: Mapping[str, Any]) -> float:
    c = entity.get("confidence_entity")
    return float(c) if isinstance(c, int | float) and 0.0 <= c <= 1.0 else 1.0


def user_acts(message: UserMessage, domain: Domain) -> list[UserActIn] | None:
    """The structured acts of ``message``, or None when its intent or entities do not map (see the table)."""
    act = INTENT_ACTS.get(message.intent or "")
    if act is None:
        return None
    acts: list[UserActIn] = []
    for entity in message.entities:
        name = entity.get("entity")
        if name in domain.slots:
            values = domain.values[domain.slots.index(name)]
            value = canonical_value(domain, (*values, DONTCARE), entity.get("value"))
            if value is None:
                return None
            if value == DONTCARE:
                acts.append(UserActIn(act="relax", slot=name))
            else:
                kind = "negate" if act == "negate" else "inform"
                acts.append(UserActIn(act=kind, slot=name, value=value, confidence=_confidence(entity)))
        elif name in domain.booking:
            value = canonical_value(domain, domain.booking[name], entity.get("value"))
            if value is None:
                return None
            acts.append(UserActIn(act="book", slot=name, value=value))
        elif name == REQUESTABLE_ENTITY:
            value = canonical_value(domain, domain.requestable, entity.get("value"))
            if value is None:
                return None
            acts.append(UserActIn(act="request", slot=value))
        # Other entities (dates, numbers from other extractors) are not segdial's: left to the assistant.
    if act == "inform":  # its acts are the entities' (a bare inform means nothing to segdial)
        return acts or None  # None: an inform of nothing segdial knows, its NLU reads the words
    if not any(a.act == act for a in acts):
        acts.insert(0, UserActIn(act=act))
    return acts


def turn_of(message: UserMessage, domain: Domain, max_text_chars: int, send_text: bool = True) -> TurnIn:
    """The segdial turn of ``message``: mapped acts and the words, or the words alone.

    ``send_text=False`` leaves the words out when the acts map (segdial then takes the register as
    plain instead of reading it: no sentence-encoder pass). Text over the service's limit is
    refused here, before a conversation is started for it.
    """
    if message.text is not None and len(message.text) > max_text_chars:
        raise MalformedTrackerError(f"the latest message is longer than {max_text_chars} characters")
    acts = user_acts(message, domain)
    if acts is None and message.text is None:
        raise MalformedTrackerError(
            f"the latest message has no text and its intent {message.intent!r} does not map to a segdial act"
        )
    text = message.text if send_text or not acts else None
    try:
        return TurnIn(text=text, acts=acts or [], idempotency_key=message.idempotency_key)
    except ValidationError as e:
        raise MalformedTrackerError(f"the latest message cannot be a turn: {e.errors()[0]['msg']}") from e


def reply_message(reply: ReplyOut, responses: Collection[str]) -> dict[str, Any]:
    """Arguments of ``dispatcher.utter_message`` for the reply: a mapped response, else the text."""
    candidates = [f"{RESPONSE_PREFIX}{reply.system_act}"]
    if reply.system_slot:
        candidates.insert(0, f"{RESPONSE_PREFIX}{reply.system_act}_{reply.system_slot}")
    for name in candidates:
        if name in responses:
            return {"response": name, "segdial_text": reply.system_text}
    return {"text": reply.system_text}


def outcome_of(slots: Mapping[str, Any], intent: str | None) -> EndIn:
    """The outcome to record: the ``segdial_outcome`` slot when the assistant set it, else from the
    last intent (goodbye: success; stop: abandoned; anything else, e.g. segdial ending at the turn
    limit: failure); the rating from ``segdial_rating`` (1-5) when set."""
    chosen = slots.get(OUTCOME_SLOT)
    if chosen is not None and chosen not in OUTCOMES:
        raise MalformedTrackerError(f"slot {OUTCOME_SLOT} is {chosen!r}; use one of: {', '.join(OUTCOMES)}")
    if chosen is None:
        act = INTENT_ACTS.get(intent or "")
        chosen = "success" if act == "bye" else "abandoned" if act == "hangup" else "failure"
    rating = slots.get(RATING_SLOT)
    if rating is not None and (
        isinstance(rating, bool) or not isinstance(rating, int | float) or rating != int(rating) or not 1 <= rating <= 5
    ):
        raise MalformedTrackerError(f"slot {RATING_SLOT} is {rating!r}; use a whole number from 1 to 5")
    return EndIn(outcome=chosen, rating=int(rating) if rating is not None else None)
