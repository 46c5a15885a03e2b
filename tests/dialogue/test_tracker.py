"""``DialogueState`` and ``ObservationLayout``: belief updates, slot rules, action mask, features.

Also checks that the observation layout is a partition of the vector with nothing about the
user's segment or behaviour parameters in it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dialogue.acts import N_SYSTEM_ACTS, N_USER_ACTS, SLOT_ACTS, SystemAct, UserAct
from dialogue.domain import DONTCARE, UNKNOWN, Domain, load_domain
from dialogue.tracker import DialogueState, ObservationLayout
from simulators.profiles import PARAMETERS

MAX_TURNS = 10


def layout_fields(layout: ObservationLayout) -> dict[str, list[int]]:
    """Every named field of the layout (all its properties but ``size``) as a list of indices."""
    out = {}
    for name, attr in vars(ObservationLayout).items():
        if isinstance(attr, property) and name != "size":
            where = getattr(layout, name)
            out[name] = list(range(where.start, where.stop)) if isinstance(where, slice) else [where]
    return out


def allowed(state: DialogueState) -> set[SystemAct]:
    return {SystemAct(a) for a in np.nonzero(state.action_mask())[0]}


@pytest.fixture
def state(domain: Domain) -> DialogueState:
    return DialogueState(domain, MAX_TURNS)


@pytest.mark.parametrize("n_slots", [2, 3, 4, 7])
def test_layout_is_a_partition_of_the_vector(n_slots: int) -> None:
    layout = ObservationLayout(n_slots)
    fields = layout_fields(layout)
    indices = sorted(i for idx in fields.values() for i in idx)
    assert indices == list(range(layout.size)), "fields must cover every index exactly once"
    for per_slot in ("filled", "conf", "confirmed"):
        assert len(fields[per_slot]) == n_slots
    assert len(fields["user_act"]) == N_USER_ACTS
    assert len(fields["system_act"]) == N_SYSTEM_ACTS


def test_layout_has_no_segment_or_user_parameter_field() -> None:
    names = set(layout_fields(ObservationLayout(3)))
    assert not any("segment" in n for n in names)
    assert not names & set(PARAMETERS)


def test_fresh_state_observation(state: DialogueState) -> None:
    lay = state.layout
    obs = state.observation()
    assert obs.dtype == np.float32 and obs.shape == (lay.size,)
    assert obs[lay.kb_matches] == pytest.approx(1.0)  # every entity matches an empty belief
    assert not obs[lay.filled].any() and not obs[lay.conf].any() and not obs[lay.confirmed].any()
    assert not obs[lay.user_act].any() and not obs[lay.system_act].any()
    assert obs[lay.turn] == 0.0
    assert allowed(state) == {
        SystemAct.GREET,
        SystemAct.REQUEST_ONE,
        SystemAct.REQUEST_ALL,
        SystemAct.SUGGEST,
        SystemAct.EXPLAIN,
        SystemAct.BYE,
    }


def test_informs_fill_the_belief_and_the_turn_features(state: DialogueState) -> None:
    lay, k = state.layout, state.domain.n_slots
    state.user_acted(UserAct.INFORM, [(0, 2, 0.9), (1, DONTCARE, 1.0)], register=1.0)
    obs = state.observation()
    assert state.values[:2] == [2, DONTCARE]
    assert obs[lay.filled][:2].tolist() == [1.0, 1.0] and obs[lay.filled][2:].sum() == 0
    assert obs[lay.conf][:2] == pytest.approx([0.9, 1.0])
    assert obs[lay.confirmed][:2].tolist() == [0.0, 1.0]  # a dropped constraint needs no confirmation
    assert obs[lay.user_act.start + UserAct.INFORM] == 1.0 and obs[lay.user_act].sum() == 1.0
    assert obs[lay.slots_given] == pytest.approx(2 / k)
    assert obs[lay.turn_conf] == pytest.approx(0.95)
    assert obs[lay.register] == 1.0
    expected = math.log1p(state.domain.matches.count(state.values)) / math.log1p(len(state.domain.entities))
    assert obs[lay.kb_matches] == pytest.approx(expected)
    # A turn without informs clears the turn features but keeps the belief.
    state.system_acted(SystemAct.REQUEST_ONE)
    state.user_acted(UserAct.DONT_KNOW, [])
    obs = state.observation()
    assert obs[lay.slots_given] == 0.0 and obs[lay.turn_conf] == 0.0
    assert state.values[:2] == [2, DONTCARE]


def test_slot_rules(state: DialogueState) -> None:
    k = state.domain.n_slots
    assert {SystemAct.REQUEST_ONE, SystemAct.SUGGEST, SystemAct.CONFIRM} == SLOT_ACTS
    assert state.target_slot(SystemAct.REQUEST_ONE) == 0
    assert state.target_slot(SystemAct.CONFIRM) == -1
    state.user_acted(UserAct.INFORM, [(0, 1, 0.9), (1, 1, 0.5), (2, DONTCARE, 1.0)])
    assert state.missing_slots() == list(range(3, k))
    expected_missing = 3 if k > 3 else -1
    assert state.target_slot(SystemAct.REQUEST_ONE) == expected_missing
    assert state.target_slot(SystemAct.SUGGEST) == expected_missing
    assert state.target_slot(SystemAct.CONFIRM) == 1  # least confident; DONTCARE is never confirmed
    for act in set(SystemAct) - SLOT_ACTS:
        assert state.target_slot(act) == -1
    state.system_acted(SystemAct.CONFIRM)
    state.user_acted(UserAct.AFFIRM, [], target=1)
    assert state.confirmed[1] and state.conf[1] == 1.0
    assert state.target_slot(SystemAct.CONFIRM) == 0


def test_affirm_confirms_only_after_a_confirm(state: DialogueState) -> None:
    state.user_acted(UserAct.INFORM, [(0, 1, 0.5)])
    state.system_acted(SystemAct.REQUEST_ONE)
    state.user_acted(UserAct.AFFIRM, [], target=0)
    assert not state.confirmed[0]
    assert SystemAct.CONFIRM in allowed(state)
    state.system_acted(SystemAct.CONFIRM)
    state.user_acted(UserAct.AFFIRM, [], target=0)
    assert state.confirmed[0]
    assert SystemAct.CONFIRM not in allowed(state)


def fill_all(state: DialogueState) -> None:
    entity = state.domain.entities[0]
    state.user_acted(UserAct.INFORM, [(k, v, 0.9) for k, v in enumerate(entity.values)])


def test_offer_accept_request_book_flow(state: DialogueState) -> None:
    lay = state.layout
    fill_all(state)
    assert SystemAct.OFFER in allowed(state)
    assert not {SystemAct.REQUEST_ONE, SystemAct.REQUEST_ALL, SystemAct.SUGGEST} & allowed(state)
    # "Nothing matches" is not an accepted offer.
    state.system_acted(SystemAct.OFFER)
    state.user_acted(UserAct.ACK, [], offer_count=0)
    assert not state.offer_accepted
    state.system_acted(SystemAct.OFFER)
    state.user_acted(UserAct.REQUEST, [], offer_count=1)
    assert state.offer_accepted and state.requests_pending
    assert {SystemAct.INFORM, SystemAct.REQMORE} <= allowed(state) and SystemAct.OFFER not in allowed(state)
    state.system_acted(SystemAct.INFORM)
    assert not state.requests_pending
    state.user_acted(UserAct.BOOK, [])
    assert state.booking_requested and SystemAct.ASK_BOOKING in allowed(state)
    state.system_acted(SystemAct.ASK_BOOKING)
    state.user_acted(UserAct.BOOK, [], booking_details=True)
    assert state.booking_info and allowed(state) >= {SystemAct.BOOK} and SystemAct.ASK_BOOKING not in allowed(state)
    state.system_acted(SystemAct.BOOK)
    assert state.booked and SystemAct.BOOK not in allowed(state)
    obs = state.observation()
    for flag in ("offer_accepted", "booking_requested", "booking_info", "booked"):
        assert obs[getattr(lay, flag)] == 1.0, flag
    # A changed constraint withdraws the acceptance.
    state.user_acted(UserAct.NEGATE, [(0, 2, 0.8)])
    assert not state.offer_accepted and SystemAct.OFFER in allowed(state)


def test_book_without_details_does_not_book(state: DialogueState) -> None:
    fill_all(state)
    state.system_acted(SystemAct.OFFER)
    state.user_acted(UserAct.ACK, [], offer_count=3)
    state.system_acted(SystemAct.BOOK)
    assert not state.booked


def test_explain_turn_and_greet(state: DialogueState) -> None:
    lay = state.layout
    state.system_acted(SystemAct.EXPLAIN)
    state.user_acted(UserAct.ACK, [])
    obs = state.observation()
    assert obs[lay.explained] == 1.0
    assert obs[lay.system_act.start + SystemAct.EXPLAIN] == 1.0 and obs[lay.system_act].sum() == 1.0
    assert obs[lay.turn] == pytest.approx(1 / MAX_TURNS)
    assert SystemAct.EXPLAIN not in allowed(state) and SystemAct.GREET not in allowed(state)
    for _ in range(2 * MAX_TURNS):
        state.system_acted(SystemAct.REQMORE)
    assert state.observation()[lay.turn] == 1.0  # capped


def test_mask_always_allows_bye_and_reset_forgets(state: DialogueState) -> None:
    fill_all(state)
    state.system_acted(SystemAct.EXPLAIN)
    state.reset()
    fresh = DialogueState(state.domain, MAX_TURNS)
    np.testing.assert_array_equal(state.observation(), fresh.observation())
    np.testing.assert_array_equal(state.action_mask(), fresh.action_mask())
    assert state.action_mask()[SystemAct.BYE] == 1


def test_unknown_values_are_not_filled() -> None:
    state = DialogueState(load_domain("restaurant"), MAX_TURNS)
    state.user_acted(UserAct.INFORM, [(1, 3, 0.7)])
    assert state.values[0] == UNKNOWN and state.target_slot(SystemAct.REQUEST_ONE) == 0
