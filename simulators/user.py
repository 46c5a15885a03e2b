"""The agenda-based simulated user (one dialogue at a time) and the NLU noise channel.

The rules here are the user model; ``simulators.vector_env`` implements the same rules on arrays
for thousands of dialogues at once, and a test checks that both agree statistically.

A user has a goal (constraint values from a knowledge-base entity, sometimes altered so nothing
matches; whether it wants information about the entity and a booking) and an agenda: give the
constraints, then, once an entity is accepted, ask for the information, then book, then leave.
How it answers each system act depends on its behaviour parameters (``simulators.profiles``):

- open turns (the opening, GREET): volunteers each known, untold constraint w.p. ``initiative``;
- REQUEST_ONE: names the value if it knows it (adding others w.p. ``initiative`` / 4), else
  DONT_KNOW;
- REQUEST_ALL: with two or more slots missing it is CONFUSED w.p. ``confusion``, else it names
  every missing value it knows;
- SUGGEST: picks its value from the options (now it knows it); costs ``suggest_cost`` if it knew;
- CONFIRM: AFFIRM if the system heard right, else NEGATE with the value; costs ``confirm_cost``;
- EXPLAIN: ACK; costs ``explain_cost``, and halves its confusion and mishearing from then on;
- OFFER: if nothing matches, NEGATE with a value the system got wrong, else RELAX a constraint
  w.p. ``relax`` or leave; if an entity is offered that does not fit, NEGATE w.p. ``vigilance``,
  else accept it unknowingly (the dialogue can then end, but not in success); if it fits, accept
  and voice the next wish w.p. ``initiative`` (else ACK);
- INFORM, BOOK, REQMORE: the next wish (REQMORE always gets it), or BYE when the task is done.

Every turn adds ``turn_cost`` to its annoyance; it hangs up when annoyance reaches ``patience`` or,
w.p. ``hazard``, for no reason. Values it says are misheard w.p. ``error_rate`` (less when picked
from options); the NLU confidence of a misheard value tends to be lower, not always.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dialogue.acts import SystemAct, UserAct, UserTurn
from dialogue.domain import DONTCARE, UNKNOWN, Domain
from simulators.profiles import PARAMETERS

# Fixed parts of the user model, shared by the scalar and the vectorised implementation.
P_NO_MATCH = 0.15  # a goal altered so that (usually) no entity matches
P_WANTS_INFO = 0.7
P_WANTS_BOOKING = 0.5
DONT_KNOW_COST = 0.3  # annoyance of being asked for a value one cannot name
CONFUSION_COST = 1.0
REJECT_COST = 1.0  # annoyance of being offered the wrong thing
INVALID_COST = 0.5  # annoyance of a system act that makes no sense now
ANSWER_EXTRA = 0.25  # asked for one slot, a user adds the others at a quarter of its initiative
GUIDED_FACTOR = 0.5  # an explanation halves confusion and mishearing
PICKED_FACTOR = 0.5  # a value picked from listed options (not known before) is misheard less
# NLU confidence: uniform on [lo, lo + width], different for heard and misheard values.
CONF_RIGHT = (0.45, 0.55)
CONF_WRONG = (0.10, 0.60)

CONTINUE, SUCCESS, FAILURE = 0, 1, -1


@dataclass
class UserGoal:
    """What one user wants: constraint codes (DONTCARE once relaxed), information, a booking."""

    constraints: list[int]
    knows: list[bool]
    requests: tuple[str, ...]
    booking: dict[str, str]


def sample_goal(domain: Domain, p_know: float, uniform: Callable[[], float]) -> UserGoal:
    """A goal from a random entity, altered w.p. P_NO_MATCH so it may match nothing."""
    n_entities = len(domain.entities)
    entity = domain.entities[min(int(uniform() * n_entities), n_entities - 1)]
    constraints = list(entity.values)
    if uniform() < P_NO_MATCH:
        k = min(int(uniform() * domain.n_slots), domain.n_slots - 1)
        n = domain.n_values[k]
        constraints[k] = 1 + min(int(uniform() * n), n - 1)
    knows = [uniform() < p_know for _ in constraints]
    requests: tuple[str, ...] = ()
    if uniform() < P_WANTS_INFO:
        first = min(int(uniform() * len(domain.requestable)), len(domain.requestable) - 1)
        requests = (domain.requestable[first],)
    booking: dict[str, str] = {}
    if uniform() < P_WANTS_BOOKING:
        booking = {s: vals[min(int(uniform() * len(vals)), len(vals) - 1)] for s, vals in domain.booking.items()}
    return UserGoal(constraints, knows, requests, booking)


class AgendaUser:
    """One simulated user for one dialogue. ``uniform`` is its only source of randomness."""

    def __init__(self, domain: Domain, params: np.ndarray, uniform: Callable[[], float]) -> None:
        self.domain = domain
        self.uniform = uniform
        p = dict(zip(PARAMETERS, (float(x) for x in params), strict=True))
        self.params = p
        self.initiative = p["initiative"]
        self.confusion = p["confusion"]
        self.error_rate = p["error_rate"]
        self.goal = sample_goal(domain, p["p_know"], uniform)
        self.told = [False] * domain.n_slots
        self.annoyance = 0.0
        self.guided = False
        self.offer_accepted = False
        self.offer_fits = False
        self.requests_voiced = False
        self.requests_done = not self.goal.requests
        self.booking_given = False
        self.booked = not self.goal.booking
        self.picked = False  # the last values were picked from listed options

    # -- helpers ---------------------------------------------------------------------------
    def fits(self, k: int, heard: int) -> bool:
        """Whether the system's value for slot k satisfies the goal."""
        want = self.goal.constraints[k]
        return want == DONTCARE or heard == want

    def task_done(self) -> bool:
        return self.offer_accepted and self.requests_done and self.booked

    def _say(self, k: int) -> tuple[int, int]:
        self.told[k] = True
        return (k, self.goal.constraints[k])

    def _volunteer(self, exclude: int = -1) -> list[tuple[int, int]]:
        p = self.initiative * (ANSWER_EXTRA if exclude >= 0 else 1.0)
        return [
            self._say(k)
            for k in range(self.domain.n_slots)
            if k != exclude and not self.told[k] and self.goal.knows[k] and self.uniform() < p
        ]

    def _next_wish(self, prompted: bool) -> tuple[UserTurn, int]:
        if self.task_done():
            return UserTurn(UserAct.BYE), SUCCESS if self.offer_fits else FAILURE
        if not prompted and self.uniform() >= self.initiative:
            return UserTurn(UserAct.ACK), CONTINUE
        if not self.requests_done:
            self.requests_voiced = True
            return UserTurn(UserAct.REQUEST, requests=self.goal.requests), CONTINUE
        if not self.booking_given and (prompted or self.uniform() < self.initiative):
            self.booking_given = True
            return UserTurn(UserAct.BOOK, booking=self.goal.booking), CONTINUE
        return UserTurn(UserAct.BOOK), CONTINUE

    def _relaxable(self) -> list[int]:
        """Constrained slots whose dropping leaves at least one matching entity."""
        out = []
        for k, v in enumerate(self.goal.constraints):
            if v > 0:
                trial = list(self.goal.constraints)
                trial[k] = DONTCARE
                if self.domain.matches.count(trial) > 0:
                    out.append(k)
        return out

    # -- the user's side of one exchange -----------------------------------------------------
    def opening(self) -> UserTurn:
        """The user's first turn, before the system says anything."""
        self.picked = False
        informs = self._volunteer()
        return UserTurn(UserAct.INFORM if informs else UserAct.HELLO, tuple(informs))

    def respond(self, act: int, target: int, heard: list[int], kb_count: int, first_turn: bool) -> tuple[UserTurn, int]:
        """Answer a system act. ``heard`` is the system's belief (value codes) when it acted."""
        turn, outcome = self._answer(act, target, heard, kb_count, first_turn)
        if outcome == CONTINUE:
            self.annoyance += self.params["turn_cost"]
            if self.annoyance >= self.params["patience"] or self.uniform() < self.params["hazard"]:
                return UserTurn(UserAct.HANGUP), FAILURE
        return turn, outcome

    def _answer(self, act: int, target: int, heard: list[int], kb_count: int, first_turn: bool) -> tuple[UserTurn, int]:
        self.picked = False
        p = self.params
        missing = [k for k, v in enumerate(heard) if v == UNKNOWN]
        if act == SystemAct.GREET and first_turn:
            informs = self._volunteer()
            return UserTurn(UserAct.INFORM if informs else UserAct.HELLO, tuple(informs)), CONTINUE
        if act == SystemAct.REQUEST_ONE and missing:
            if self.goal.knows[target]:
                informs = [self._say(target), *self._volunteer(exclude=target)]
                return UserTurn(UserAct.INFORM, tuple(informs)), CONTINUE
            self.annoyance += DONT_KNOW_COST
            return UserTurn(UserAct.DONT_KNOW), CONTINUE
        if act == SystemAct.REQUEST_ALL and missing:
            confusion = self.confusion * (GUIDED_FACTOR if self.guided else 1.0)
            if len(missing) >= 2 and self.uniform() < confusion:
                self.annoyance += CONFUSION_COST
                return UserTurn(UserAct.CONFUSED), CONTINUE
            informs = [self._say(k) for k in missing if self.goal.knows[k]]
            if informs:
                return UserTurn(UserAct.INFORM, tuple(informs)), CONTINUE
            self.annoyance += DONT_KNOW_COST
            return UserTurn(UserAct.DONT_KNOW), CONTINUE
        if act == SystemAct.SUGGEST and missing:
            if self.goal.knows[target]:
                self.annoyance += p["suggest_cost"]
            else:
                # A value picked from the list it was shown is heard better than one it had in mind.
                self.picked = True
            self.goal.knows[target] = True
            return UserTurn(UserAct.INFORM, (self._say(target),)), CONTINUE
        if act == SystemAct.CONFIRM and target >= 0:
            self.annoyance += p["confirm_cost"]
            if self.fits(target, heard[target]):
                return UserTurn(UserAct.AFFIRM), CONTINUE
            self.offer_accepted = False
            return UserTurn(UserAct.NEGATE, (self._say(target),)), CONTINUE
        if act == SystemAct.EXPLAIN and not self.guided:
            self.annoyance += p["explain_cost"]
            self.guided = True
            return UserTurn(UserAct.ACK), CONTINUE
        if act == SystemAct.OFFER and not missing and not self.offer_accepted:
            return self._answer_offer(heard, kb_count)
        if act == SystemAct.INFORM and self.requests_voiced and not self.requests_done:
            self.requests_done = True
            return self._next_wish(prompted=False)
        if act == SystemAct.ASK_BOOKING and self.offer_accepted and not self.booking_given and not self.booked:
            self.booking_given = True
            return UserTurn(UserAct.BOOK, booking=self.goal.booking), CONTINUE
        if act == SystemAct.BOOK and self.offer_accepted and self.booking_given and not self.booked:
            self.booked = True
            return self._next_wish(prompted=False)
        if act == SystemAct.REQMORE and self.offer_accepted:
            return self._next_wish(prompted=True)
        if act == SystemAct.BYE:
            return UserTurn(UserAct.BYE), SUCCESS if self.task_done() and self.offer_fits else FAILURE
        self.annoyance += INVALID_COST
        return UserTurn(UserAct.CONFUSED), CONTINUE

    def _answer_offer(self, heard: list[int], kb_count: int) -> tuple[UserTurn, int]:
        wrong = [k for k, v in enumerate(heard) if not self.fits(k, v)]
        if kb_count == 0:
            if wrong:
                self.annoyance += REJECT_COST
                return UserTurn(UserAct.NEGATE, (self._say(wrong[0]),)), CONTINUE
            options = self._relaxable()
            if options and self.uniform() < self.params["relax"]:
                k = options[min(int(self.uniform() * len(options)), len(options) - 1)]
                self.goal.constraints[k] = DONTCARE
                return UserTurn(UserAct.RELAX, ((k, DONTCARE),)), CONTINUE
            return UserTurn(UserAct.HANGUP), FAILURE
        if wrong and self.uniform() < self.params["vigilance"]:
            self.annoyance += REJECT_COST
            return UserTurn(UserAct.NEGATE, (self._say(wrong[0]),)), CONTINUE
        self.offer_accepted = True
        self.offer_fits = not wrong
        return self._next_wish(prompted=False)

    # -- the NLU channel -------------------------------------------------------------------
    def heard(self, informs: tuple[tuple[int, int], ...]) -> list[tuple[int, int, float]]:
        """What the system's NLU makes of the values said: (slot, code, confidence)."""
        err = self.error_rate * (GUIDED_FACTOR if self.guided else 1.0) * (PICKED_FACTOR if self.picked else 1.0)
        out = []
        for k, v in informs:
            if v == DONTCARE:
                out.append((k, v, 1.0))
            elif self.uniform() < err:
                n = self.domain.n_values[k]
                other = 1 + min(int(self.uniform() * (n - 1)), n - 2)
                out.append((k, other + (other >= v), CONF_WRONG[0] + CONF_WRONG[1] * self.uniform()))
            else:
                out.append((k, v, CONF_RIGHT[0] + CONF_RIGHT[1] * self.uniform()))
        return out
