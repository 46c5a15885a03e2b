"""User-side NLG: styles from verbosity, per-turn jitter, and text written in the user's style.

The same ``UserTurn`` written for a terse user (verbosity 0.1) and a chatty one (0.9) must read
differently, and the chatty text must be longer on average; every act is expressible in every
style, and the values said are in the text (by name or by a synonym).
"""

from __future__ import annotations

import numpy as np
import pytest

from dialogue.acts import UserAct, UserTurn
from dialogue.domain import DONTCARE, Domain, load_domain
from simulators.user_nlg import (
    CHATTY,
    ENTRAINMENT,
    PLAIN,
    STYLE_NOISE,
    TERSE,
    register_of,
    style_of,
    turn_style,
    turn_styles,
    user_text,
)

TERSE_USER, CHATTY_USER = 0.1, 0.9


def sample_turns(domain: Domain) -> list[UserTurn]:
    """One turn of every act type, with informs, requests and booking details where they apply."""
    e = domain.entities[0]
    booking = {slot: values[0] for slot, values in domain.booking.items()}
    special = {
        UserAct.INFORM: UserTurn(UserAct.INFORM, tuple(enumerate(e.values))),
        UserAct.NEGATE: UserTurn(UserAct.NEGATE, ((1, e.values[1]),)),
        UserAct.RELAX: UserTurn(UserAct.RELAX, ((0, DONTCARE),)),
        UserAct.REQUEST: UserTurn(UserAct.REQUEST, requests=(domain.requestable[0],)),
        UserAct.BOOK: UserTurn(UserAct.BOOK, booking=booking),
    }
    return [special.get(act, UserTurn(act)) for act in UserAct] + [UserTurn(UserAct.BOOK)]


def test_style_of_thresholds() -> None:
    assert style_of(0.0) == style_of(TERSE_USER) == TERSE
    assert style_of(0.5) == PLAIN
    assert style_of(CHATTY_USER) == style_of(1.0) == CHATTY
    assert style_of(1 / 3 - 1e-9) == TERSE and style_of(1 / 3) == PLAIN
    assert style_of(2 / 3 - 1e-9) == PLAIN and style_of(2 / 3) == CHATTY


def test_turn_style_jitters_around_the_verbosity() -> None:
    assert turn_style(0.5, 0.5) == PLAIN
    assert turn_style(TERSE_USER, 0.5) == TERSE and turn_style(CHATTY_USER, 0.5) == CHATTY
    # A plain user just below the chatty threshold sometimes writes a chatty turn, never a terse one.
    v = 2 / 3 - STYLE_NOISE / 2
    styles = {turn_style(v, u) for u in np.linspace(0.0, 0.999, 101)}
    assert styles == {PLAIN, CHATTY}
    assert register_of(TERSE) == 0.0 and register_of(PLAIN) == 0.5 and register_of(CHATTY) == 1.0


def test_after_the_opening_users_entrain_to_the_plain_register() -> None:
    # The opening is always in the user's own style; later turns are plain w.p. ENTRAINMENT.
    assert turn_style(TERSE_USER, 0.5, opening=True, u_entrain=0.0) == TERSE
    assert turn_style(TERSE_USER, 0.5, opening=False, u_entrain=ENTRAINMENT - 1e-9) == PLAIN
    assert turn_style(TERSE_USER, 0.5, opening=False, u_entrain=ENTRAINMENT) == TERSE
    rng = np.random.default_rng(0)
    later = [turn_style(CHATTY_USER, rng.random(), False, rng.random()) for _ in range(4000)]
    assert abs(np.mean([s == PLAIN for s in later]) - ENTRAINMENT) < 0.03


def test_the_array_rule_is_the_scalar_rule() -> None:
    rng = np.random.default_rng(1)
    v, u, e = rng.random(500), rng.random(500), rng.random(500)
    for opening in (True, False):
        want = [turn_style(a, b, opening, c) for a, b, c in zip(v, u, e, strict=True)]
        assert turn_styles(v, u, opening, e).tolist() == want


def test_every_turn_is_expressible_in_every_style(domain: Domain) -> None:
    rng = np.random.default_rng(0)
    for turn in sample_turns(domain):
        for style in (TERSE, PLAIN, CHATTY):
            text = user_text(turn, domain, style, lambda: float(rng.random()))
            assert isinstance(text, str) and text.strip(), (turn, style)


def test_terse_and_chatty_users_write_the_same_turn_differently(domain: Domain) -> None:
    rng = np.random.default_rng(1)
    for turn in sample_turns(domain):
        terse, chatty = [], []
        for _ in range(30):
            terse.append(user_text(turn, domain, style_of(TERSE_USER), lambda: float(rng.random())))
            chatty.append(user_text(turn, domain, style_of(CHATTY_USER), lambda: float(rng.random())))
        assert not set(terse) & set(chatty), turn
        assert np.mean([len(t) for t in chatty]) > np.mean([len(t) for t in terse]), turn


def test_values_and_slots_are_in_the_text(domain: Domain) -> None:
    rng = np.random.default_rng(2)
    inform = sample_turns(domain)[UserAct.INFORM]
    relax = UserTurn(UserAct.RELAX, ((1, DONTCARE),))
    request = UserTurn(UserAct.REQUEST, requests=(domain.requestable[-1],))
    for style in (TERSE, PLAIN, CHATTY):
        for _ in range(10):
            text = user_text(inform, domain, style, lambda: float(rng.random())).lower()
            for k, code in inform.informs:
                name = domain.value_name(k, code)
                forms = (name, *domain.synonyms.get(name, ()))
                assert any(f.lower() in text for f in forms), (text, forms)
        assert domain.slots[1] in user_text(relax, domain, style, lambda: float(rng.random()))
        assert domain.requestable[-1] in user_text(request, domain, style, lambda: float(rng.random()))


def test_chatty_users_use_synonyms_more_often(restaurant: Domain) -> None:
    rng = np.random.default_rng(3)
    # A value with synonyms, said many times in each style.
    k, code = next(
        (k, c)
        for k in range(restaurant.n_slots)
        for c in range(1, restaurant.n_values[k] + 1)
        if restaurant.synonyms.get(restaurant.value_name(k, c))
    )
    turn = UserTurn(UserAct.INFORM, ((k, code),))
    name = restaurant.value_name(k, code)

    def synonym_rate(style: int) -> float:
        texts = [user_text(turn, restaurant, style, lambda: float(rng.random())) for _ in range(400)]
        return float(np.mean([name not in t for t in texts]))

    assert synonym_rate(CHATTY) > synonym_rate(TERSE) + 0.2


@pytest.mark.parametrize("style", [TERSE, PLAIN, CHATTY])
def test_booking_details_are_in_the_text(domain: Domain, style: int) -> None:
    booking = {slot: values[-1] for slot, values in domain.booking.items()}
    text = user_text(UserTurn(UserAct.BOOK, booking=booking), domain, style, lambda: 0.5)
    assert all(v in text for v in booking.values())


@pytest.mark.parametrize("style", [TERSE, PLAIN, CHATTY])
def test_a_hello_names_no_value(domain: Domain, style: int) -> None:
    """ "I need a hotel" would ask for the hotel type: a greeting uses the domain's neutral words."""
    text = user_text(UserTurn(UserAct.HELLO), domain, style, lambda: 0.5).lower()
    values = {v.lower() for vals in domain.values for v in vals}
    assert not any(f" {v} " in f" {text.replace('?', ' ').replace('.', ' ')} " for v in values), text


def test_a_terse_stay_says_its_nights() -> None:
    hotel = load_domain("hotel")
    text = user_text(
        UserTurn(UserAct.BOOK, booking={"people": "2", "day": "friday", "stay": "3"}), hotel, TERSE, lambda: 0.5
    )
    assert "3 nights" in text and "2" in text
