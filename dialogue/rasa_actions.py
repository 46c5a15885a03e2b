"""The Rasa custom actions that hand dialogue management to segdial (the module rasa-sdk loads).

- ``action_segdial_policy``: Rasa's latest user message (text, intent, entities) becomes a segdial
  turn of the conversation of ``sender_id`` (see ``dialogue.rasa.mapping`` for the mapping and
  ``dialogue.rasa.backends`` for the conversation); the policy's reply goes back through the
  dispatcher, with ``SlotSet`` events for the conversation id, the inferred segment, its
  confidence and the system act, and ``segdial_handover`` (the reason, when segdial asks to route
  the user to a person; the assistant's ``utter_handoff`` then follows, if its domain has one).
  When the turn ends the conversation (the user said goodbye, or
  segdial closed it) the action records the outcome as ``action_segdial_end`` does.
- ``action_segdial_end``: records the outcome (the ``segdial_outcome`` slot, or from the last
  intent) and the ``segdial_rating`` slot, and clears those slots and the conversation id; for
  endings the assistant decides itself (a handover to a person, a restart).

A message the actions cannot use (a malformed tracker, an intent-only message that maps to no act,
text segdial refuses) is rejected: the action server answers 400 with the reason.

Run with ``segdial actions`` (or ``python -m rasa_sdk --actions dialogue.rasa_actions``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.interfaces import ActionExecutionRejection

from dialogue.rasa.backends import backend, end_conversation, take_turn
from dialogue.rasa.mapping import (
    CONFIDENCE_SLOT,
    CONVERSATION_SLOT,
    HANDOVER_RESPONSE,
    HANDOVER_SLOT,
    OUTCOME_SLOT,
    RATING_SLOT,
    SEGMENT_SLOT,
    SYSTEM_ACT_SLOT,
    MalformedTrackerError,
    outcome_of,
    read_message,
    reply_message,
    turn_of,
)
from dialogue.service.conversations import ServiceError

POLICY_ACTION = "action_segdial_policy"
END_ACTION = "action_segdial_end"


@contextlib.contextmanager
def rejected_as_bad_input(action: str) -> Iterator[None]:
    """Turn what is wrong with the request into Rasa's rejection (the action server answers 400)."""
    try:
        yield
    except MalformedTrackerError as e:
        raise ActionExecutionRejection(action, str(e)) from e
    except ServiceError as e:
        raise ActionExecutionRejection(action, f"segdial refused the turn ({e.status}): {e.message}") from e


def conversation_of(tracker: Tracker) -> tuple[str, str | None, Mapping[str, Any]]:
    """The sender id, the conversation id kept in the slot (if any) and the slots, checked."""
    sender = tracker.sender_id
    if not isinstance(sender, str) or not sender or len(sender) > 200 or "\x00" in sender:
        raise MalformedTrackerError("tracker.sender_id must be a non-empty string of at most 200 characters")
    slots = tracker.slots
    if not isinstance(slots, Mapping):
        raise MalformedTrackerError("tracker.slots must be an object")
    known = slots.get(CONVERSATION_SLOT)
    if known is not None and not isinstance(known, str):
        raise MalformedTrackerError(f"slot {CONVERSATION_SLOT} must be a string")
    return sender, known or None, slots


def forget_conversation() -> list[dict[str, Any]]:
    """The slot events after a conversation ended: its id and outcome slots are cleared."""
    return [SlotSet(CONVERSATION_SLOT, None), SlotSet(OUTCOME_SLOT, None), SlotSet(RATING_SLOT, None)]


class ActionSegdialPolicy(Action):
    """Let segdial's policy answer the user's latest message."""

    def name(self) -> str:
        return POLICY_ACTION

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        with rejected_as_bad_input(POLICY_ACTION):
            sender, known, slots = conversation_of(tracker)
            message = read_message(tracker.latest_message, tracker.events)
            end = outcome_of(slots, message.intent)  # checked before the turn is stored
            chosen = backend()
            conversation_id, reply = await take_turn(
                chosen, sender, known, turn_of(message, chosen.domain, chosen.max_text_chars, chosen.send_text)
            )
            if reply.ended:
                await end_conversation(chosen, sender, conversation_id, end)
        responses = (domain or {}).get("responses") or {}
        dispatcher.utter_message(**reply_message(reply, responses if isinstance(responses, Mapping) else {}))
        events = [
            SlotSet(SEGMENT_SLOT, reply.segment),
            SlotSet(CONFIDENCE_SLOT, reply.confidence),
            SlotSet(SYSTEM_ACT_SLOT, reply.system_act),
            SlotSet(HANDOVER_SLOT, reply.handover_reason if reply.handover else None),
        ]
        if reply.handover and isinstance(responses, Mapping) and HANDOVER_RESPONSE in responses:
            events.append(FollowupAction(HANDOVER_RESPONSE))
        return events + (forget_conversation() if reply.ended else [SlotSet(CONVERSATION_SLOT, conversation_id)])


class ActionSegdialEnd(Action):
    """Record how the conversation ended, and forget it (the sender's next message starts a new one)."""

    def name(self) -> str:
        return END_ACTION

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        with rejected_as_bad_input(END_ACTION):
            sender, known, slots = conversation_of(tracker)
            end = outcome_of(slots, read_message(tracker.latest_message, tracker.events).intent)
            await end_conversation(backend(), sender, known, end)
        return forget_conversation()
