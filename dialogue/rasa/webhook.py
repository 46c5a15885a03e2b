"""Rasa's side of the webhook: the action calls a Rasa server sends, built the way Rasa builds them.

``RasaTracker`` keeps one conversation as Rasa does (slots, and the events since the session
started), writes the ``POST /webhook`` body for an action (``next_action``, ``sender_id``, the
tracker state with ``latest_message``, ``events`` and ``slots``, ``domain``, ``version``) and applies
the events the action server returns. ``parse_data_of`` writes what a Rasa NLU pipeline would
report (intent and entities) for a set of segdial user acts: the inverse of
``dialogue.rasa.mapping.user_acts``. The tests and ``bench/actions_throughput.py`` talk to the
action server through these, and a backend team can use them to try its own deployment.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import rasa_sdk

from dialogue.rasa.mapping import DONTCARE, REQUESTABLE_ENTITY

# segdial act -> the intent name the example assistant uses for it (see examples/rasa/domain.yml).
ACT_INTENTS = {"hello": "greet", "negate": "deny", "bye": "goodbye", "hangup": "stop"}
# A turn of several acts is named by the act the service's tracker would take from it (the others
# ride along as entities), so the acts Rasa's message maps back to make the same turn.
_INTENT_ORDER = ("hangup", "bye", "negate", "relax", "request", "book", "affirm", "dont_know", "confused", "inform")


def parse_data_of(acts: Iterable[Mapping[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The intent and entities Rasa's NLU would give for segdial user acts (``{"act", "slot", "value", ...}``)."""
    acts = list(acts)
    kinds = [str(a["act"]) for a in acts]
    main = next((k for k in _INTENT_ORDER if k in kinds), kinds[0] if kinds else "inform")
    entities: list[dict[str, Any]] = []
    for a in acts:
        slot, kind = a.get("slot"), a["act"]
        if slot is None:
            continue
        if kind in ("inform", "negate", "book"):
            entity = {"entity": slot, "value": a.get("value")}
            if "confidence" in a:
                entity["confidence_entity"] = a["confidence"]
            entities.append(entity)
        elif kind == "relax":
            entities.append({"entity": slot, "value": DONTCARE})
        elif kind == "request":
            entities.append({"entity": REQUESTABLE_ENTITY, "value": slot})
    return ACT_INTENTS.get(main, main), entities


class RasaTracker:
    """One conversation as a Rasa server keeps it, and the webhook calls it sends for it."""

    def __init__(self, sender_id: str, slots: Iterable[str] = ()) -> None:
        self.sender_id = sender_id
        self.slots: dict[str, Any] = dict.fromkeys(slots)
        self.latest_message: dict[str, Any] = {}
        self.followup_action: str | None = None
        now = time.time()
        self.events: list[dict[str, Any]] = [
            {"event": "action", "timestamp": now, "name": "action_session_start", "policy": None, "confidence": 1.0},
            {"event": "session_started", "timestamp": now},
            {"event": "action", "timestamp": now, "name": "action_listen", "policy": None, "confidence": None},
        ]

    def user_says(
        self, text: str | None, intent: str | None, entities: list[dict[str, Any]], message_id: str | None = None
    ) -> None:
        """A user message as Rasa's NLU parsed it (a new ``message_id`` unless one is given: a retry keeps it)."""
        message_id = message_id or uuid.uuid4().hex
        self.latest_message = {
            "text": text,
            "intent": {"name": intent, "confidence": 1.0} if intent else {},
            "entities": entities,
            "message_id": message_id,
            "metadata": {},
            "intent_ranking": [{"name": intent, "confidence": 1.0}] if intent else [],
        }
        self.events.append(
            {
                "event": "user",
                "timestamp": time.time(),
                "text": text,
                "parse_data": self.latest_message,
                "input_channel": "rest",
                "message_id": message_id,
                "metadata": {},
            }
        )

    def state(self) -> dict[str, Any]:
        """The tracker state Rasa sends (``tracker.current_state()``)."""
        return {
            "sender_id": self.sender_id,
            "slots": dict(self.slots),
            "latest_message": self.latest_message,
            "latest_event_time": self.events[-1]["timestamp"],
            "followup_action": self.followup_action,
            "paused": False,
            "events": list(self.events),
            "latest_input_channel": "rest",
            "active_loop": {},
            "latest_action": {"action_name": self.events[-1].get("name")},
            "latest_action_name": next((e["name"] for e in reversed(self.events) if e["event"] == "action"), None),
        }

    def action_call(self, action: str, domain: Mapping[str, Any]) -> dict[str, Any]:
        """The ``POST /webhook`` body that asks the action server to run ``action``."""
        return {
            "next_action": action,
            "sender_id": self.sender_id,
            "tracker": self.state(),
            "domain": domain,
            "version": rasa_sdk.__version__,
        }

    def apply(self, action: str, result: Mapping[str, Any]) -> None:
        """Log the action and what it returned (its responses as bot events; slots and follow-ups applied)."""
        now = time.time()
        self.followup_action = None
        self.events.append({"event": "action", "timestamp": now, "name": action, "policy": None, "confidence": 1.0})
        for message in result.get("responses", []):
            self.events.append({"event": "bot", "timestamp": now, "text": message.get("text"), "data": {}})
        for event in result.get("events", []):
            self.events.append({**event, "timestamp": event.get("timestamp") or now})
            if event.get("event") == "slot":
                self.slots[event["name"]] = event.get("value")
            elif event.get("event") == "followup":
                self.followup_action = event.get("name")
