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


def system_text(
    act: int, state: DialogueState, offered: Entity | None = None, booking: dict[str, str] | None = None
) -> str:
    """Text of a system act in the given state (``state`` before the user answers); ``booking``: the
    booking details known so far (the service keeps them; the simulators do not)."""
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
        missing = [s for s in domain.booking if s not in (booking or {})] or list(domain.booking)
        return f"Sure. For the booking, what {_join(missing)} should I use?"
    if act == SystemAct.BOOK:
        if offered is None or not state.booking_info:
            return "I need a few more details before I can book."
        details = _join([f"{s} {booking[s]}" for s in domain.booking if s in booking]) if booking else ""
        return f"Done, your booking at {offered.name} is confirmed" + (f" ({details})." if details else ".")
    if act == SystemAct.REQMORE:
        return "Is there anything else I can help with?"
    if act == SystemAct.BYE:
        return "Thank you, goodbye!"
    raise ValueError(f"unknown system act {act}")


def no_match_text(state: DialogueState, dropped: int | None, nearest: Entity | None) -> str:
    """An offer that found nothing: the nearest alternative with the dropped constraint named, or a
    question about which constraint to drop when no single one would do."""
    domain = state.domain
    thing = domain.entity_type
    wanted = [(k, domain.value_name(k, v)) for k, v in enumerate(state.values) if v > 0]
    asked = _join([f"{domain.slots[k]} {name}" for k, name in wanted])
    sorry = f"I'm sorry, there is no {thing} with {asked}." if wanted else f"I'm sorry, there is no {thing} like that."
    if dropped is None or nearest is None:
        slots = _join([domain.slots[k] for k, _ in wanted]) or "constraints"
        return f"{sorry} Which of the {slots} could be different?"
    other = domain.value_name(dropped, nearest.values[dropped])
    return f"{sorry} The nearest is {nearest.name}, which has {domain.slots[dropped]} {other}. Would that work?"
