"""System-side NLG: every system act has text, and the text names what the act is about."""

from __future__ import annotations

import pytest

from dialogue.acts import SystemAct, UserAct
from dialogue.domain import Domain
from dialogue.nlg import no_match_text, system_text
from dialogue.tracker import DialogueState


@pytest.fixture
def state(domain: Domain) -> DialogueState:
    return DialogueState(domain, 10)


def test_every_act_has_text_in_a_fresh_and_a_full_state(state: DialogueState) -> None:
    entity = state.domain.entities[0]
    for act in SystemAct:
        assert system_text(act, state).strip(), act.name
        assert system_text(act, state, entity).strip(), act.name
    state.user_acted(UserAct.INFORM, [(k, v, 0.5) for k, v in enumerate(entity.values)])
    for act in SystemAct:
        assert system_text(act, state, entity).strip(), act.name


def test_text_names_the_slot_value_and_entity(state: DialogueState) -> None:
    dom = state.domain
    entity = dom.entities[0]
    assert dom.entity_type in system_text(SystemAct.GREET, state)
    assert dom.slots[0] in system_text(SystemAct.REQUEST_ONE, state)
    suggest = system_text(SystemAct.SUGGEST, state)
    assert all(v in suggest for v in dom.values[0])
    assert all(s in system_text(SystemAct.REQUEST_ALL, state) for s in dom.slots)
    state.user_acted(UserAct.INFORM, [(0, entity.values[0], 0.5)])
    assert dom.slots[1] in system_text(SystemAct.REQUEST_ONE, state)
    assert dom.slots[0] not in system_text(SystemAct.REQUEST_ALL, state)
    assert dom.value_name(0, entity.values[0]) in system_text(SystemAct.CONFIRM, state)
    offer = system_text(SystemAct.OFFER, state, entity)
    assert entity.name in offer
    assert "no " in system_text(SystemAct.OFFER, state, None)
    inform = system_text(SystemAct.INFORM, state, entity)
    assert all(v in inform for v in entity.info.values())
    assert all(b in system_text(SystemAct.ASK_BOOKING, state) for b in dom.booking)


def test_book_text_depends_on_booking_details(state: DialogueState) -> None:
    entity = state.domain.entities[0]
    assert entity.name not in system_text(SystemAct.BOOK, state, entity)
    state.user_acted(UserAct.BOOK, [], booking_details=True)
    assert entity.name in system_text(SystemAct.BOOK, state, entity)


def test_booking_text_asks_for_the_missing_details_and_names_the_booked_ones(state: DialogueState) -> None:
    dom = state.domain
    first, *rest = dom.booking
    ask = system_text(SystemAct.ASK_BOOKING, state, booking={first: "3"})
    assert first not in ask and all(b in ask for b in rest)
    state.user_acted(UserAct.BOOK, [], booking_details=True)
    booking = dict.fromkeys(dom.booking, "7")
    assert all(f"{b} 7" in system_text(SystemAct.BOOK, state, dom.entities[0], booking) for b in dom.booking)


def test_no_match_names_the_dropped_constraint_or_asks_which_to_drop(state: DialogueState) -> None:
    dom = state.domain
    near = dom.entities[0]
    wanted = [v % len(dom.values[k]) + 1 for k, v in enumerate(near.values)]  # another value of every slot
    state.user_acted(UserAct.INFORM, [(k, v, 1.0) for k, v in enumerate(wanted)])
    text = no_match_text(state, 0, near)
    assert near.name in text and f"{dom.slots[0]} {dom.value_name(0, near.values[0])}" in text
    assert all(dom.value_name(k, v) in text for k, v in enumerate(wanted))
    assert all(s in no_match_text(state, None, None) for s in dom.slots)


def test_unknown_act_raises(state: DialogueState) -> None:
    with pytest.raises(ValueError, match="unknown system act"):
        system_text(len(SystemAct), state)
