"""System-side natural language generation: one template per system act.

The service replies with this text and the simulators show it in transcripts, so both sides of a
simulated conversation read like the production system.
"""

from __future__ import annotations

from dialogue.acts import SystemAct
from dialogue.domain import Domain, Entity
from dialogue.tracker import DialogueState


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def system_text(act: int, state: DialogueState, offered: Entity | None = None) -> str:
    """Text of a system act in the given state (``state`` before the user answers)."""
    domain: Domain = state.domain
    thing = domain.entity_type
    if act == SystemAct.GREET:
        return f"Hello! What kind of {thing} are you looking for?"
    if act == SystemAct.REQUEST_ONE:
        k = state.target_slot(act)
        return f"What {domain.slots[k]} would you like?" if k >= 0 else "What are you looking for?"
    if act == SystemAct.REQUEST_ALL:
        missing = [domain.slots[k] for k in state.missing_slots()]
        return f"Could you tell me the {_join(missing)} you want?" if missing else "Anything else to add?"
    if act == SystemAct.CONFIRM:
        k = state.target_slot(act)
        if k < 0:
            return "Is everything correct so far?"
        return f"Just to check: you want {domain.slots[k]} {domain.value_name(k, state.values[k])}, right?"
    if act == SystemAct.SUGGEST:
        k = state.target_slot(act)
        if k < 0:
            return "I have everything I need."
        return f"For {domain.slots[k]} you can choose {_join(list(domain.values[k]))}. Which one?"
    if act == SystemAct.EXPLAIN:
        return (
            f"I can find a {thing} for you and book it. Tell me what matters to you, "
            f"like the {_join(list(domain.slots))}, and I will do the rest."
        )
    if act == SystemAct.OFFER:
        if offered is None:
            return f"I'm sorry, there is no {thing} matching what you asked for."
        desc = ", ".join(domain.value_name(k, v) for k, v in enumerate(offered.values))
        return f"{offered.name} is a good match ({desc}). Would that work?"
    if act == SystemAct.INFORM:
        if offered is None:
            return "I don't have that information."
        return " ".join(f"The {r} is {v}." for r, v in offered.info.items())
    if act == SystemAct.ASK_BOOKING:
        return f"Sure. For the booking, what {_join(list(domain.booking))} should I use?"
    if act == SystemAct.BOOK:
        if offered is None or not state.booking_info:
            return "I need a few more details before I can book."
        return f"Done, your booking at {offered.name} is confirmed."
    if act == SystemAct.REQMORE:
        return "Is there anything else I can help with?"
    if act == SystemAct.BYE:
        return "Thank you, goodbye!"
    raise ValueError(f"unknown system act {act}")
