"""System-side dialogue state tracking: what the system believes after each (noisy) user turn.

``DialogueState`` is the single place that turns observed user acts into the belief over slots the
policy sees. The simulators' environment, the service and the Rasa action all use it, so a policy
trained on the simulators sees exactly the features it will see in production.

The observation is a flat float32 vector described by ``ObservationLayout``: per slot whether it is
filled, the NLU confidence of its value and whether the user confirmed it; the knowledge-base match
count; progress flags (offer accepted, requests pending, booking); one-hot last user act and last
system act; the turn index; and turn features (slots given this turn, NLU confidence this turn).
and the register of the user's text this turn (0 terse, 0.5 plain, 1 chatty, as the NLU reads it
from the words). Nothing about the user's segment is in it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dialogue.acts import N_SYSTEM_ACTS, N_USER_ACTS, SystemAct, UserAct
from dialogue.domain import DONTCARE, UNKNOWN, Domain, Entity


@dataclass(frozen=True)
class ObservationLayout:
    """Where each feature sits in the observation vector of a domain with ``n_slots`` slots."""

    n_slots: int

    @property
    def filled(self) -> slice:
        return slice(0, self.n_slots)

    @property
    def conf(self) -> slice:
        return slice(self.n_slots, 2 * self.n_slots)

    @property
    def confirmed(self) -> slice:
        return slice(2 * self.n_slots, 3 * self.n_slots)

    @property
    def kb_matches(self) -> int:
        return 3 * self.n_slots

    @property
    def offer_accepted(self) -> int:
        return 3 * self.n_slots + 1

    @property
    def requests_pending(self) -> int:
        return 3 * self.n_slots + 2

    @property
    def booking_requested(self) -> int:
        return 3 * self.n_slots + 3

    @property
    def booking_info(self) -> int:
        return 3 * self.n_slots + 4

    @property
    def booked(self) -> int:
        return 3 * self.n_slots + 5

    @property
    def explained(self) -> int:
        return 3 * self.n_slots + 6

    @property
    def user_act(self) -> slice:
        start = 3 * self.n_slots + 7
        return slice(start, start + N_USER_ACTS)

    @property
    def system_act(self) -> slice:
        start = self.user_act.stop
        return slice(start, start + N_SYSTEM_ACTS)

    @property
    def turn(self) -> int:
        return self.system_act.stop

    @property
    def slots_given(self) -> int:
        return self.turn + 1

    @property
    def turn_conf(self) -> int:
        return self.turn + 2

    @property
    def register(self) -> int:
        return self.turn + 3

    @property
    def size(self) -> int:
        return self.turn + 4


class DialogueState:
    """The system's belief about one conversation, updated after each user turn.

    ``values[k]`` is the value code the system heard for slot k (UNKNOWN, DONTCARE or 1..n),
    ``conf[k]`` the NLU confidence of that value and ``confirmed[k]`` whether the user affirmed it.
    """

    __slots__ = (
        "_log_norm",
        "booked",
        "booking_info",
        "booking_requested",
        "conf",
        "confirmed",
        "domain",
        "explained",
        "last_system_act",
        "last_user_act",
        "layout",
        "max_turns",
        "offer_accepted",
        "register",
        "requests_pending",
        "slots_given",
        "turn",
        "turn_conf",
        "values",
    )

    def __init__(self, domain: Domain, max_turns: int) -> None:
        self.domain = domain
        self.max_turns = max_turns
        self.layout = ObservationLayout(domain.n_slots)
        self._log_norm = 1.0 / math.log1p(len(domain.entities))
        self.reset()

    def reset(self) -> None:
        """Forget everything: a new conversation."""
        k = self.domain.n_slots
        self.values = [UNKNOWN] * k
        self.conf = [0.0] * k
        self.confirmed = [False] * k
        self.offer_accepted = False
        self.requests_pending = False
        self.booking_requested = False
        self.booking_info = False
        self.booked = False
        self.explained = False
        self.last_user_act: int = -1
        self.last_system_act: int = -1
        self.turn = 0
        self.slots_given = 0
        self.turn_conf = 0.0
        self.register = 0.5

    # -- persistence (the service stores this with the conversation) ----------------------
    _FIELDS = (
        "values",
        "conf",
        "confirmed",
        "offer_accepted",
        "requests_pending",
        "booking_requested",
        "booking_info",
        "booked",
        "explained",
        "last_user_act",
        "last_system_act",
        "turn",
        "slots_given",
        "turn_conf",
        "register",
    )

    def to_dict(self) -> dict[str, object]:
        """The state as JSON-ready data (the domain and turn limit are stored beside it)."""
        return {name: getattr(self, name) for name in self._FIELDS}

    @classmethod
    def from_dict(cls, domain: Domain, max_turns: int, data: dict[str, object]) -> DialogueState:
        """Rebuild a state saved by ``to_dict``; a ValueError names a missing or malformed field."""
        state = cls(domain, max_turns)
        for name in cls._FIELDS:
            if name not in data:
                raise ValueError(f"stored dialogue state has no {name!r}")
            setattr(state, name, data[name])
        k = domain.n_slots
        if not all(isinstance(x, list) and len(x) == k for x in (state.values, state.conf, state.confirmed)):
            raise ValueError(f"stored dialogue state does not have {k} slots for domain {domain.name!r}")
        return state

    # -- the slot rules of the slot-taking acts -------------------------------------------
    def missing_slots(self) -> list[int]:
        """Slots with no value yet, in ontology order."""
        return [k for k, v in enumerate(self.values) if v == UNKNOWN]

    def confirm_target(self) -> int:
        """The least confident filled, unconfirmed slot, or -1 when there is none."""
        best, best_conf = -1, 2.0
        for k, v in enumerate(self.values):
            if v > 0 and not self.confirmed[k] and self.conf[k] < best_conf:
                best, best_conf = k, self.conf[k]
        return best

    def target_slot(self, act: int) -> int:
        """The slot a slot-taking act addresses (-1 for acts without one)."""
        if act == SystemAct.CONFIRM:
            return self.confirm_target()
        if act in (SystemAct.REQUEST_ONE, SystemAct.SUGGEST):
            for k, v in enumerate(self.values):
                if v == UNKNOWN:
                    return k
        return -1

    def kb_count(self) -> int:
        """Entities matching the current belief."""
        return self.domain.matches.count(self.values)

    def offer_candidate(self) -> Entity | None:
        """The entity an OFFER names now: the first one matching the belief, or None if none does."""
        return self.domain.matching(self.values)[0] if self.kb_count() else None

    # -- updates --------------------------------------------------------------------------
    def system_acted(self, act: int) -> None:
        """Record the system's act (before the user answers it)."""
        self.last_system_act = act
        self.turn += 1
        if act == SystemAct.EXPLAIN:
            self.explained = True
        elif act == SystemAct.INFORM:
            self.requests_pending = False
        elif act == SystemAct.BOOK and self.offer_accepted and self.booking_info:
            self.booked = True

    def user_acted(
        self,
        act: int,
        informs: list[tuple[int, int, float]],
        *,
        target: int = -1,
        offer_count: int = 0,
        booking_details: bool = False,
        register: float = 0.5,
    ) -> None:
        """Update the belief with what the NLU observed of the user's turn.

        ``informs`` are (slot, observed value code, confidence); ``target`` is the slot of the
        system act just answered; ``offer_count`` the number of entities the system's offer
        matched (0 means it said none matched); ``register`` the style of the text (0 terse,
        0.5 plain, 1 chatty).
        """
        for k, v, c in informs:
            self.values[k] = v
            self.conf[k] = c
            # A dropped constraint needs no confirmation.
            self.confirmed[k] = v == DONTCARE
        sys_act = self.last_system_act
        if act == UserAct.AFFIRM and sys_act == SystemAct.CONFIRM and target >= 0:
            self.confirmed[target] = True
            self.conf[target] = 1.0
        if informs and act in (UserAct.NEGATE, UserAct.INFORM, UserAct.RELAX):
            self.offer_accepted = False
        elif (
            sys_act == SystemAct.OFFER
            and offer_count > 0
            and act in (UserAct.ACK, UserAct.AFFIRM, UserAct.REQUEST, UserAct.BOOK, UserAct.BYE)
        ):  # "yes", "ok", a question about it, "book it", "thanks bye": the offer is taken
            self.offer_accepted = True
        if act == UserAct.REQUEST:
            self.requests_pending = True
        if act == UserAct.BOOK:
            self.booking_requested = True
        if booking_details:
            self.booking_info = True
        self.last_user_act = act
        self.slots_given = len(informs)
        self.turn_conf = sum(c for _, _, c in informs) / len(informs) if informs else 0.0
        self.register = register

    # -- what the policy sees -------------------------------------------------------------
    def action_mask(self) -> npt.NDArray[np.int8]:
        """1 for acts that make sense now, 0 for the rest (BYE is always allowed)."""
        missing = UNKNOWN in self.values
        unconfirmed = any(v > 0 and not c for v, c in zip(self.values, self.confirmed, strict=True))
        mask = np.zeros(N_SYSTEM_ACTS, dtype=np.int8)
        mask[SystemAct.GREET] = self.turn == 0
        mask[SystemAct.REQUEST_ONE] = mask[SystemAct.REQUEST_ALL] = mask[SystemAct.SUGGEST] = missing
        mask[SystemAct.CONFIRM] = unconfirmed
        mask[SystemAct.EXPLAIN] = not self.explained
        mask[SystemAct.OFFER] = not missing and not self.offer_accepted
        mask[SystemAct.INFORM] = self.requests_pending
        mask[SystemAct.ASK_BOOKING] = self.offer_accepted and self.booking_requested and not self.booking_info
        mask[SystemAct.BOOK] = self.offer_accepted and self.booking_info and not self.booked
        mask[SystemAct.REQMORE] = self.offer_accepted
        mask[SystemAct.BYE] = 1
        return mask

    def observation(self) -> npt.NDArray[np.float32]:
        """The policy's input: the flat feature vector of ``ObservationLayout``."""
        lay = self.layout
        k = self.domain.n_slots
        feats = [0.0] * lay.size
        for i in range(k):
            v = self.values[i]
            feats[i] = 1.0 if v != UNKNOWN else 0.0
            feats[k + i] = self.conf[i]
            feats[2 * k + i] = 1.0 if self.confirmed[i] else 0.0
        feats[lay.kb_matches] = math.log1p(self.kb_count()) * self._log_norm
        feats[lay.offer_accepted] = float(self.offer_accepted)
        feats[lay.requests_pending] = float(self.requests_pending)
        feats[lay.booking_requested] = float(self.booking_requested)
        feats[lay.booking_info] = float(self.booking_info)
        feats[lay.booked] = float(self.booked)
        feats[lay.explained] = float(self.explained)
        if self.last_user_act >= 0:
            feats[lay.user_act.start + self.last_user_act] = 1.0
        if self.last_system_act >= 0:
            feats[lay.system_act.start + self.last_system_act] = 1.0
        feats[lay.turn] = min(self.turn / self.max_turns, 1.0)
        feats[lay.slots_given] = self.slots_given / k
        feats[lay.turn_conf] = self.turn_conf
        feats[lay.register] = self.register
        return np.array(feats, dtype=np.float32)
