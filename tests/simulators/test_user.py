"""The agenda-based user: every behaviour of the user model happens, and has its effect.

Each test builds an ``AgendaUser`` with hand-picked parameters (a neutral user with one behaviour
switched on, see ``conftest.user_params``), a scripted ``uniform`` source and, where it matters, a
hand-made goal, then plays system acts at it through ``respond`` exactly as the environment does.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest

from dialogue.acts import SystemAct, UserAct, UserTurn
from dialogue.domain import DONTCARE, UNKNOWN, Domain
from simulators import user as um
from simulators.user import CONTINUE, FAILURE, SUCCESS, AgendaUser, UserGoal, sample_goal

MakeUser = Callable[..., AgendaUser]


@pytest.fixture
def make_user(domain: Domain, make_params: Callable[..., np.ndarray], draws: Callable[..., object]) -> MakeUser:
    """``make_user(uniform=0.5, constraints=None, knows=None, requests=(), booking=None, **params)``.

    ``uniform`` is a float (every draw returns it), a list (the draws after the goal was sampled,
    then 0.5) or a callable. The goal is set by hand: by default the first entity's values, all known, no
    information wanted and no booking.
    """

    def make(
        uniform: float | list[float] | Callable[[], float] = 0.5,
        constraints: list[int] | None = None,
        knows: list[bool] | None = None,
        requests: tuple[str, ...] = (),
        booking: dict[str, str] | None = None,
        **params: float,
    ) -> AgendaUser:
        source = uniform if callable(uniform) else draws(0.5 if isinstance(uniform, list) else uniform)
        user = AgendaUser(domain, make_params(**params), source)  # type: ignore[arg-type]
        if isinstance(uniform, list):
            source.push(*uniform)  # type: ignore[union-attr]  # after the goal was sampled
        goal = UserGoal(
            constraints=list(constraints if constraints is not None else domain.entities[0].values),
            knows=list(knows if knows is not None else [True] * domain.n_slots),
            requests=tuple(requests),
            booking=dict(booking or {}),
        )
        user.goal = goal
        user.requests_done = not goal.requests
        user.booked = not goal.booking
        return user

    return make


def blank(domain: Domain) -> list[int]:
    """The system's belief before anything was said."""
    return [UNKNOWN] * domain.n_slots


def booking_of(domain: Domain) -> dict[str, str]:
    return {slot: values[0] for slot, values in domain.booking.items()}


def respond(
    user: AgendaUser, act: SystemAct, heard: list[int], target: int = -1, kb: int = 1, first: bool = False
) -> tuple[UserTurn, int]:
    return user.respond(act, target, heard, kb, first)


def no_match_goal(domain: Domain) -> tuple[list[int], list[int]]:
    """A goal no entity matches but some relaxation does, preferring one where not every slot
    can be relaxed; returns (constraints, relaxable slots)."""
    found = None
    for combo in itertools.product(*[range(1, n + 1) for n in domain.n_values]):
        if domain.matches.count(combo) > 0:
            continue
        relaxable = [
            k
            for k in range(domain.n_slots)
            if domain.matches.count([DONTCARE if j == k else v for j, v in enumerate(combo)]) > 0
        ]
        if relaxable and (found is None or len(relaxable) < len(found[1])):
            found = (list(combo), relaxable)
    assert found is not None
    return found


# -- the goal -------------------------------------------------------------------------------------
def test_sample_goal_from_an_entity(domain: Domain, draws: Callable[..., object]) -> None:
    n = len(domain.entities)
    # Every draw 0.5: entity n // 2 unaltered (0.5 >= P_NO_MATCH), information (0.5 < P_WANTS_INFO),
    # no booking (0.5 >= P_WANTS_BOOKING).
    goal = sample_goal(domain, 1.0, draws(0.5))  # type: ignore[arg-type]
    assert goal.constraints == list(domain.entities[n // 2].values)
    assert goal.knows == [True] * domain.n_slots
    assert len(goal.requests) == 1 and goal.requests[0] in domain.requestable
    assert goal.booking == {}
    assert sample_goal(domain, 0.0, draws(0.5)).knows == [False] * domain.n_slots  # type: ignore[arg-type]
    # Low draws: entity 0, altered (slot 0, value 1), every request wish and a booking.
    goal = sample_goal(domain, 1.0, draws(0.0))  # type: ignore[arg-type]
    assert goal.constraints == [1, *domain.entities[0].values[1:]]
    assert set(goal.booking) == set(domain.booking)
    assert all(goal.booking[s] in vals for s, vals in domain.booking.items())


def test_sample_goal_rates(domain: Domain) -> None:
    rng = np.random.default_rng(0)
    goals = [sample_goal(domain, 0.3, lambda: float(rng.random())) for _ in range(3000)]
    knows = np.mean([g.knows for g in goals])
    info = np.mean([bool(g.requests) for g in goals])
    book = np.mean([bool(g.booking) for g in goals])
    no_match = np.mean([domain.matches.count(g.constraints) == 0 for g in goals])
    assert knows == pytest.approx(0.3, abs=0.03)
    assert info == pytest.approx(um.P_WANTS_INFO, abs=0.04)
    assert book == pytest.approx(um.P_WANTS_BOOKING, abs=0.04)
    assert 0.0 < no_match <= um.P_NO_MATCH + 0.03


# -- opening, GREET and initiative ---------------------------------------------------------------
def test_full_initiative_volunteers_every_known_slot(domain: Domain, make_user: MakeUser) -> None:
    user = make_user(initiative=1.0)
    turn = user.opening()
    assert turn.act == UserAct.INFORM
    assert turn.informs == tuple((k, v) for k, v in enumerate(user.goal.constraints))
    assert user.told == [True] * domain.n_slots


def test_no_initiative_volunteers_nothing(domain: Domain, make_user: MakeUser) -> None:
    turn = make_user(initiative=0.0).opening()
    assert turn == UserTurn(UserAct.HELLO)


def test_only_known_slots_are_volunteered(domain: Domain, make_user: MakeUser) -> None:
    knows = [k % 2 == 0 for k in range(domain.n_slots)]
    turn = make_user(initiative=1.0, knows=knows).opening()
    assert [k for k, _ in turn.informs] == [k for k in range(domain.n_slots) if knows[k]]


def test_greet_gets_the_untold_slots_by_initiative(domain: Domain, make_user: MakeUser) -> None:
    k = domain.n_slots
    # initiative 0.5: draws of 0.9 volunteer nothing, draws of 0.1 volunteer everything.
    user = make_user([0.9] * k + [0.1] * k, initiative=0.5)
    assert user.opening().act == UserAct.HELLO
    turn, outcome = respond(user, SystemAct.GREET, blank(domain), first=True)
    assert outcome == CONTINUE and turn.act == UserAct.INFORM and len(turn.informs) == k
    # A greeting later in the dialogue makes no sense.
    turn, outcome = respond(user, SystemAct.GREET, blank(domain), first=False)
    assert turn.act == UserAct.CONFUSED and outcome == CONTINUE
    assert user.annoyance == pytest.approx(um.INVALID_COST)


# -- REQUEST_ONE, REQUEST_ALL and p_know --------------------------------------------------------
def test_request_one_known_value(domain: Domain, make_user: MakeUser) -> None:
    user = make_user(turn_cost=0.1)
    turn, outcome = respond(user, SystemAct.REQUEST_ONE, blank(domain), target=0)
    assert (turn.act, outcome) == (UserAct.INFORM, CONTINUE)
    assert turn.informs == ((0, user.goal.constraints[0]),)
    assert user.annoyance == pytest.approx(0.1)


def test_request_one_unknown_value_gives_dont_know(domain: Domain, make_user: MakeUser) -> None:
    user = make_user(knows=[False] * domain.n_slots, turn_cost=0.1)
    turn, outcome = respond(user, SystemAct.REQUEST_ONE, blank(domain), target=0)
    assert (turn.act, outcome) == (UserAct.DONT_KNOW, CONTINUE)
    assert turn.informs == ()
    assert user.annoyance == pytest.approx(um.DONT_KNOW_COST + 0.1)


def test_request_one_adds_others_at_a_fraction_of_initiative(domain: Domain, make_user: MakeUser) -> None:
    initiative = 0.8
    below, above = 0.9 * um.ANSWER_EXTRA * initiative, min(1.1 * um.ANSWER_EXTRA * initiative, 0.99)
    turn, _ = respond(make_user(below, initiative=initiative), SystemAct.REQUEST_ONE, blank(domain), target=0)
    assert [k for k, _ in turn.informs] == list(range(domain.n_slots))
    turn, _ = respond(make_user(above, initiative=initiative), SystemAct.REQUEST_ONE, blank(domain), target=0)
    assert [k for k, _ in turn.informs] == [0]


def test_request_all_confuses_with_two_or_more_missing(domain: Domain, make_user: MakeUser) -> None:
    user = make_user(confusion=1.0, turn_cost=0.1)
    turn, outcome = respond(user, SystemAct.REQUEST_ALL, blank(domain))
    assert (turn.act, outcome) == (UserAct.CONFUSED, CONTINUE)
    assert user.annoyance == pytest.approx(um.CONFUSION_COST + 0.1)
    # With a single slot missing the question is not confusing.
    user = make_user(confusion=1.0)
    heard = list(user.goal.constraints)
    heard[-1] = UNKNOWN
    turn, _ = respond(user, SystemAct.REQUEST_ALL, heard)
    assert turn.act == UserAct.INFORM
    assert turn.informs == ((domain.n_slots - 1, user.goal.constraints[-1]),)


def test_request_all_confusion_is_a_probability(domain: Domain, make_user: MakeUser) -> None:
    turn, _ = respond(make_user(0.59, confusion=0.6), SystemAct.REQUEST_ALL, blank(domain))
    assert turn.act == UserAct.CONFUSED
    turn, _ = respond(make_user(0.61, confusion=0.6), SystemAct.REQUEST_ALL, blank(domain))
    assert turn.act == UserAct.INFORM


def test_request_all_names_every_known_missing_value(domain: Domain, make_user: MakeUser) -> None:
    knows = [k != 1 for k in range(domain.n_slots)]
    user = make_user(knows=knows)
    turn, _ = respond(user, SystemAct.REQUEST_ALL, blank(domain))
    assert turn.act == UserAct.INFORM
    assert turn.informs == tuple((k, user.goal.constraints[k]) for k in range(domain.n_slots) if knows[k])
    user = make_user(knows=[False] * domain.n_slots, turn_cost=0.1)
    turn, _ = respond(user, SystemAct.REQUEST_ALL, blank(domain))
    assert turn.act == UserAct.DONT_KNOW
    assert user.annoyance == pytest.approx(um.DONT_KNOW_COST + 0.1)


# -- SUGGEST -------------------------------------------------------------------------------------
def test_suggest_makes_an_unknown_value_known_for_free(domain: Domain, make_user: MakeUser) -> None:
    user = make_user(knows=[False] * domain.n_slots, suggest_cost=2.0, turn_cost=0.1)
    turn, outcome = respond(user, SystemAct.SUGGEST, blank(domain), target=0)
    assert (turn.act, outcome) == (UserAct.INFORM, CONTINUE)
    assert turn.informs == ((0, user.goal.constraints[0]),)
    assert user.goal.knows[0] and not any(user.goal.knows[1:])
    assert user.annoyance == pytest.approx(0.1)
    # Now it knows the value: asked for it, it names it.
    turn, _ = respond(user, SystemAct.REQUEST_ONE, blank(domain), target=0)
    assert turn.act == UserAct.INFORM


def test_suggest_costs_when_the_value_was_known(domain: Domain, make_user: MakeUser) -> None:
    user = make_user(suggest_cost=2.0, turn_cost=0.1)
    turn, _ = respond(user, SystemAct.SUGGEST, blank(domain), target=0)
    assert turn.act == UserAct.INFORM
    assert user.annoyance == pytest.approx(2.1)


def test_picked_values_are_misheard_less(domain: Domain, make_user: MakeUser) -> None:
    err = 0.8
    between = err * (1 + um.PICKED_FACTOR) / 2  # misheard at full rate, heard right when picked
    picked = make_user(between, knows=[False] * domain.n_slots, error_rate=err)
    turn, _ = respond(picked, SystemAct.SUGGEST, blank(domain), target=0)
    ((k, v, _),) = picked.heard(turn.informs)
    assert (k, v) == turn.informs[0]
    known = make_user(between, error_rate=err)
    turn, _ = respond(known, SystemAct.SUGGEST, blank(domain), target=0)
    ((k, v, _),) = known.heard(turn.informs)
    assert v != turn.informs[0][1]


# -- CONFIRM -------------------------------------------------------------------------------------
def test_confirm_right_value_is_affirmed_at_a_cost(domain: Domain, make_user: MakeUser) -> None:
    user = make_user(confirm_cost=0.7, turn_cost=0.1)
    heard = list(user.goal.constraints)
    turn, outcome = respond(user, SystemAct.CONFIRM, heard, target=1)
    assert (turn, outcome) == (UserTurn(UserAct.AFFIRM), CONTINUE)
    assert user.annoyance == pytest.approx(0.8)


def test_confirm_wrong_value_is_negated_with_the_right_one(domain: Domain, make_user: MakeUser) -> None:
    user = make_user(confirm_cost=0.7, turn_cost=0.1)
    heard = list(user.goal.constraints)
    heard[1] = heard[1] % domain.n_values[1] + 1
    turn, outcome = respond(user, SystemAct.CONFIRM, heard, target=1)
    assert (turn.act, outcome) == (UserAct.NEGATE, CONTINUE)
    assert turn.informs == ((1, user.goal.constraints[1]),)
    assert user.annoyance == pytest.approx(0.8)


def test_confirm_of_a_dropped_constraint_is_affirmed(domain: Domain, make_user: MakeUser) -> None:
    constraints = list(domain.entities[0].values)
    constraints[0] = DONTCARE
    user = make_user(constraints=constraints)
    heard = list(domain.entities[0].values)
    heard[0] = heard[0] % domain.n_values[0] + 1
    turn, _ = respond(user, SystemAct.CONFIRM, heard, target=0)
    assert turn.act == UserAct.AFFIRM


# -- EXPLAIN -------------------------------------------------------------------------------------
def test_explain_guides_the_user_once(domain: Domain, make_user: MakeUser) -> None:
    user = make_user(explain_cost=0.4, turn_cost=0.1)
    turn, outcome = respond(user, SystemAct.EXPLAIN, blank(domain))
    assert (turn, outcome) == (UserTurn(UserAct.ACK), CONTINUE)
    assert user.guided
    assert user.annoyance == pytest.approx(0.5)
    turn, _ = respond(user, SystemAct.EXPLAIN, blank(domain))
    assert turn.act == UserAct.CONFUSED
    assert user.annoyance == pytest.approx(0.5 + um.INVALID_COST + 0.1)


def test_explain_halves_confusion(domain: Domain, make_user: MakeUser) -> None:
    confusion = 0.8
    between = confusion * (1 + um.GUIDED_FACTOR) / 2
    unguided = make_user(between, confusion=confusion)
    assert respond(unguided, SystemAct.REQUEST_ALL, blank(domain))[0].act == UserAct.CONFUSED
    guided = make_user(between, confusion=confusion)
    respond(guided, SystemAct.EXPLAIN, blank(domain))
    assert respond(guided, SystemAct.REQUEST_ALL, blank(domain))[0].act == UserAct.INFORM


def test_explain_halves_mishearing(domain: Domain, make_user: MakeUser) -> None:
    err = 0.8
    between = err * (1 + um.GUIDED_FACTOR) / 2
    say = ((0, domain.entities[0].values[0]),)
    unguided = make_user(between, error_rate=err)
    assert unguided.heard(say)[0][1] != say[0][1]
    guided = make_user(between, error_rate=err)
    respond(guided, SystemAct.EXPLAIN, blank(domain))
    assert guided.heard(say)[0][1] == say[0][1]


# -- patience, turn cost and hazard --------------------------------------------------------------
def test_hangs_up_when_annoyance_reaches_patience(domain: Domain, make_user: MakeUser) -> None:
    user = make_user(patience=1.0, turn_cost=0.25)
    for _ in range(3):
        turn, outcome = respond(user, SystemAct.REQUEST_ONE, blank(domain), target=0)
        assert (turn.act, outcome) == (UserAct.INFORM, CONTINUE)
    turn, outcome = respond(user, SystemAct.REQUEST_ONE, blank(domain), target=0)
    assert (turn, outcome) == (UserTurn(UserAct.HANGUP), FAILURE)
    assert user.annoyance == pytest.approx(1.0)


def test_costs_count_towards_patience(domain: Domain, make_user: MakeUser) -> None:
    user = make_user(patience=1.0, confirm_cost=0.6)
    heard = list(user.goal.constraints)
    assert respond(user, SystemAct.CONFIRM, heard, target=0)[1] == CONTINUE
    assert respond(user, SystemAct.CONFIRM, heard, target=0) == (UserTurn(UserAct.HANGUP), FAILURE)


def test_hazard_one_hangs_up_at_once(domain: Domain, make_user: MakeUser) -> None:
    user = make_user(hazard=1.0)
    assert respond(user, SystemAct.REQUEST_ONE, blank(domain), target=0) == (UserTurn(UserAct.HANGUP), FAILURE)


def test_hazard_zero_and_patience_never_reached_never_hang_up(domain: Domain, make_user: MakeUser) -> None:
    rng = np.random.default_rng(0)
    user = make_user(lambda: float(rng.random()), hazard=0.0, turn_cost=0.01)
    for _ in range(200):
        turn, outcome = respond(user, SystemAct.REQUEST_ONE, blank(domain), target=0)
        assert outcome == CONTINUE and turn.act != UserAct.HANGUP


# -- OFFER: relaxation and vigilance --------------------------------------------------------------
def test_no_match_relaxes_a_constraint(domain: Domain, make_user: MakeUser) -> None:
    constraints, relaxable = no_match_goal(domain)
    chosen = set()
    for draw in np.linspace(0.0, 0.999, 12):
        user = make_user(float(draw), constraints=constraints, relax=1.0)
        turn, outcome = respond(user, SystemAct.OFFER, list(constraints), kb=0)
        assert (turn.act, outcome) == (UserAct.RELAX, CONTINUE)
        ((k, v),) = turn.informs
        assert v == DONTCARE and user.goal.constraints[k] == DONTCARE
        assert domain.matches.count(user.goal.constraints) > 0
        chosen.add(k)
    assert chosen == set(relaxable)


def test_no_match_without_relaxing_hangs_up(domain: Domain, make_user: MakeUser) -> None:
    constraints, _ = no_match_goal(domain)
    user = make_user(constraints=constraints, relax=0.0)
    assert respond(user, SystemAct.OFFER, list(constraints), kb=0) == (UserTurn(UserAct.HANGUP), FAILURE)


def test_no_match_because_the_system_misheard_is_corrected(domain: Domain, make_user: MakeUser) -> None:
    user = make_user(relax=1.0, turn_cost=0.1)
    heard = list(user.goal.constraints)
    heard[0] = heard[0] % domain.n_values[0] + 1
    turn, outcome = respond(user, SystemAct.OFFER, heard, kb=0)
    assert (turn.act, outcome) == (UserAct.NEGATE, CONTINUE)
    assert turn.informs == ((0, user.goal.constraints[0]),)
    assert user.annoyance == pytest.approx(um.REJECT_COST + 0.1)


def test_vigilant_user_rejects_a_wrong_offer(domain: Domain, make_user: MakeUser) -> None:
    user = make_user(vigilance=1.0, turn_cost=0.1)
    heard = list(user.goal.constraints)
    heard[1] = heard[1] % domain.n_values[1] + 1
    turn, outcome = respond(user, SystemAct.OFFER, heard, kb=3)
    assert (turn.act, outcome) == (UserAct.NEGATE, CONTINUE)
    assert turn.informs == ((1, user.goal.constraints[1]),)
    assert not user.offer_accepted
    assert user.annoyance == pytest.approx(um.REJECT_COST + 0.1)


def test_unvigilant_user_accepts_a_wrong_offer_and_fails(domain: Domain, make_user: MakeUser) -> None:
    user = make_user(vigilance=0.0, initiative=1.0, requests=(domain.requestable[0],))
    heard = list(user.goal.constraints)
    heard[1] = heard[1] % domain.n_values[1] + 1
    turn, outcome = respond(user, SystemAct.OFFER, heard, kb=3)
    assert (turn.act, outcome) == (UserAct.REQUEST, CONTINUE)
    assert user.offer_accepted and not user.offer_fits
    turn, outcome = respond(user, SystemAct.INFORM, heard)
    assert (turn.act, outcome) == (UserAct.BYE, FAILURE)  # leaves happy, but with the wrong entity
    # Without further wishes it says goodbye at once, still without success.
    user = make_user(vigilance=0.0)
    assert respond(user, SystemAct.OFFER, heard, kb=3) == (UserTurn(UserAct.BYE), FAILURE)


def test_right_offer_is_accepted(domain: Domain, make_user: MakeUser) -> None:
    user = make_user(vigilance=1.0)
    assert respond(user, SystemAct.OFFER, list(user.goal.constraints), kb=2) == (UserTurn(UserAct.BYE), SUCCESS)
    assert user.offer_accepted and user.offer_fits


# -- the NLU channel -----------------------------------------------------------------------------
def test_error_rate_one_always_mishears(domain: Domain, make_user: MakeUser) -> None:
    rng = np.random.default_rng(3)
    user = make_user(lambda: float(rng.random()), error_rate=1.0)
    lo, width = um.CONF_WRONG
    for k, n in enumerate(domain.n_values):
        for v in range(1, n + 1):
            seen = set()
            for _ in range(40):
                ((slot, code, conf),) = user.heard(((k, v),))
                assert slot == k and code != v and 1 <= code <= n
                assert lo <= conf <= lo + width
                seen.add(code)
            assert seen == set(range(1, n + 1)) - {v}, "every other value can be misheard"


def test_error_rate_zero_never_mishears(domain: Domain, make_user: MakeUser) -> None:
    rng = np.random.default_rng(4)
    user = make_user(lambda: float(rng.random()), error_rate=0.0)
    lo, width = um.CONF_RIGHT
    say = tuple((k, 1 + k % n) for k, n in enumerate(domain.n_values))
    for _ in range(50):
        out = user.heard(say)
        assert [(k, v) for k, v, _ in out] == list(say)
        assert all(lo <= c <= lo + width for _, _, c in out)


def test_dontcare_is_heard_with_full_confidence(domain: Domain, make_user: MakeUser) -> None:
    user = make_user(error_rate=1.0)
    assert user.heard(((0, DONTCARE),)) == [(0, DONTCARE, 1.0)]


# -- the agenda -----------------------------------------------------------------------------------
def test_agenda_with_initiative_to_success(domain: Domain, make_user: MakeUser) -> None:
    booking = booking_of(domain)
    user = make_user(initiative=1.0, requests=(domain.requestable[0],), booking=booking)
    heard = list(user.goal.constraints)
    assert respond(user, SystemAct.OFFER, heard, kb=1) == (
        UserTurn(UserAct.REQUEST, requests=(domain.requestable[0],)),
        CONTINUE,
    )
    assert respond(user, SystemAct.INFORM, heard) == (UserTurn(UserAct.BOOK, booking=booking), CONTINUE)
    assert respond(user, SystemAct.BOOK, heard) == (UserTurn(UserAct.BYE), SUCCESS)
    assert user.task_done()


def test_agenda_without_initiative_needs_prompts(domain: Domain, make_user: MakeUser) -> None:
    booking = booking_of(domain)
    user = make_user(initiative=0.0, requests=(domain.requestable[1],), booking=booking)
    heard = list(user.goal.constraints)
    assert respond(user, SystemAct.OFFER, heard, kb=1) == (UserTurn(UserAct.ACK), CONTINUE)
    # Nothing was asked yet: informing makes no sense.
    assert respond(user, SystemAct.INFORM, heard)[0].act == UserAct.CONFUSED
    turn, _ = respond(user, SystemAct.REQMORE, heard)
    assert turn == UserTurn(UserAct.REQUEST, requests=(domain.requestable[1],))
    assert respond(user, SystemAct.INFORM, heard) == (UserTurn(UserAct.ACK), CONTINUE)
    # Booking before the details were given makes no sense.
    assert respond(user, SystemAct.BOOK, heard)[0].act == UserAct.CONFUSED
    assert respond(user, SystemAct.ASK_BOOKING, heard) == (UserTurn(UserAct.BOOK, booking=booking), CONTINUE)
    assert respond(user, SystemAct.BOOK, heard) == (UserTurn(UserAct.BYE), SUCCESS)


def test_reqmore_prompts_the_booking_with_details(domain: Domain, make_user: MakeUser) -> None:
    booking = booking_of(domain)
    user = make_user(initiative=0.0, booking=booking)
    heard = list(user.goal.constraints)
    assert respond(user, SystemAct.OFFER, heard, kb=1)[0].act == UserAct.ACK
    assert respond(user, SystemAct.REQMORE, heard) == (UserTurn(UserAct.BOOK, booking=booking), CONTINUE)
    assert respond(user, SystemAct.BOOK, heard) == (UserTurn(UserAct.BYE), SUCCESS)


def test_system_bye_before_the_task_is_done_fails(domain: Domain, make_user: MakeUser) -> None:
    user = make_user(requests=(domain.requestable[0],))
    assert respond(user, SystemAct.BYE, blank(domain)) == (UserTurn(UserAct.BYE), FAILURE)
    user = make_user(initiative=1.0, requests=(domain.requestable[0],))
    heard = list(user.goal.constraints)
    respond(user, SystemAct.OFFER, heard, kb=1)
    assert respond(user, SystemAct.BYE, heard) == (UserTurn(UserAct.BYE), FAILURE)


@pytest.mark.parametrize(
    "act", [SystemAct.INFORM, SystemAct.ASK_BOOKING, SystemAct.BOOK, SystemAct.REQMORE, SystemAct.OFFER]
)
def test_acts_that_make_no_sense_confuse_and_annoy(domain: Domain, make_user: MakeUser, act: SystemAct) -> None:
    user = make_user(turn_cost=0.1)
    turn, outcome = respond(user, act, blank(domain), kb=5)  # nothing said yet, nothing offered
    assert (turn, outcome) == (UserTurn(UserAct.CONFUSED), CONTINUE)
    assert user.annoyance == pytest.approx(um.INVALID_COST + 0.1)


def test_outcome_codes() -> None:
    assert len({CONTINUE, SUCCESS, FAILURE}) == 3
    assert CONTINUE == 0
