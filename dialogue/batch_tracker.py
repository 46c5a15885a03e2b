"""``BatchDialogueState``: the array twin of ``DialogueState`` for thousands of dialogues at once.

Same fields, same update rules, same observation layout, as ``(B, ...)`` NumPy arrays. The
vectorised simulator uses it; a test checks it against ``DialogueState`` row by row.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from dialogue.acts import N_SYSTEM_ACTS, SystemAct, UserAct
from dialogue.domain import DONTCARE, UNKNOWN, Domain
from dialogue.tracker import ObservationLayout

_ACCEPTING = np.array([UserAct.ACK, UserAct.AFFIRM, UserAct.REQUEST, UserAct.BOOK, UserAct.BYE])
_CHANGING = np.array([UserAct.NEGATE, UserAct.INFORM, UserAct.RELAX])


class BatchDialogueState:
    """The system's belief about ``n`` conversations."""

    def __init__(self, domain: Domain, max_turns: int, n: int) -> None:
        self.domain = domain
        self.max_turns = max_turns
        self.n = n
        self.layout = ObservationLayout(domain.n_slots)
        self._log_norm = 1.0 / math.log1p(len(domain.entities))
        k = domain.n_slots
        self.values = np.zeros((n, k), dtype=np.int64)
        self.conf = np.zeros((n, k))
        self.confirmed = np.zeros((n, k), dtype=bool)
        self.offer_accepted = np.zeros(n, dtype=bool)
        self.requests_pending = np.zeros(n, dtype=bool)
        self.booking_requested = np.zeros(n, dtype=bool)
        self.booking_info = np.zeros(n, dtype=bool)
        self.booked = np.zeros(n, dtype=bool)
        self.explained = np.zeros(n, dtype=bool)
        self.last_user_act = np.full(n, -1, dtype=np.int64)
        self.last_system_act = np.full(n, -1, dtype=np.int64)
        self.turn = np.zeros(n, dtype=np.int64)
        self.slots_given = np.zeros(n, dtype=np.int64)
        self.turn_conf = np.zeros(n)
        self.register = np.full(n, 0.5)
        self._rows = np.arange(n)

    def reset(self, rows: npt.NDArray[np.int64]) -> None:
        """Forget the conversations in ``rows``."""
        self.values[rows] = UNKNOWN
        self.conf[rows] = 0.0
        self.confirmed[rows] = False
        for flag in (
            self.offer_accepted,
            self.requests_pending,
            self.booking_requested,
            self.booking_info,
            self.booked,
            self.explained,
        ):
            flag[rows] = False
        self.last_user_act[rows] = -1
        self.last_system_act[rows] = -1
        self.turn[rows] = 0
        self.slots_given[rows] = 0
        self.turn_conf[rows] = 0.0
        self.register[rows] = 0.5

    # -- slot rules (as DialogueState.target_slot) ------------------------------------------
    def first_missing(self) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
        """(has a missing slot, index of the first missing slot) per row."""
        missing = self.values == UNKNOWN
        return np.asarray(missing.any(1)), missing.argmax(1)

    def confirm_target(self) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
        """(has an unconfirmed value, least confident unconfirmed slot) per row."""
        candidate = (self.values > 0) & ~self.confirmed
        return np.asarray(candidate.any(1)), np.where(candidate, self.conf, 2.0).argmin(1)

    def kb_count(self) -> npt.NDArray[np.int64]:
        return self.domain.matches.count_batch(self.values)

    # -- updates ------------------------------------------------------------------------------
    def system_acted(self, act: npt.NDArray[np.int64]) -> None:
        self.last_system_act[:] = act
        self.turn += 1
        self.explained |= act == SystemAct.EXPLAIN
        self.requests_pending &= act != SystemAct.INFORM
        self.booked |= (act == SystemAct.BOOK) & self.offer_accepted & self.booking_info

    def user_acted(
        self,
        rows: npt.NDArray[np.int64] | slice,
        act: npt.NDArray[np.int64],
        informs: npt.NDArray[np.bool_],
        heard: npt.NDArray[np.int64],
        conf: npt.NDArray[np.float64],
        *,
        target: npt.NDArray[np.int64] | None = None,
        offer_count: npt.NDArray[np.int64] | None = None,
        booking_details: npt.NDArray[np.bool_] | None = None,
        register: npt.NDArray[np.float64] | None = None,
    ) -> None:
        """Update ``rows`` with the observed user turn; arrays are aligned with ``rows``."""
        values, cf, confirmed = self.values[rows], self.conf[rows], self.confirmed[rows]
        values[informs] = heard[informs]
        cf[informs] = conf[informs]
        confirmed[informs] = heard[informs] == DONTCARE
        sys_act = self.last_system_act[rows]
        if target is not None:
            aff = (act == UserAct.AFFIRM) & (sys_act == SystemAct.CONFIRM) & (target >= 0)
            idx = np.nonzero(aff)[0]
            confirmed[idx, target[idx]] = True
            cf[idx, target[idx]] = 1.0
        self.values[rows], self.conf[rows], self.confirmed[rows] = values, cf, confirmed
        changed = informs.any(1) & np.isin(act, _CHANGING)
        offer_acc = self.offer_accepted[rows] & ~changed
        if offer_count is not None:
            offer_acc |= ~changed & (sys_act == SystemAct.OFFER) & (offer_count > 0) & np.isin(act, _ACCEPTING)
        self.offer_accepted[rows] = offer_acc
        self.requests_pending[rows] |= act == UserAct.REQUEST
        self.booking_requested[rows] |= act == UserAct.BOOK
        if booking_details is not None:
            self.booking_info[rows] |= booking_details
        self.last_user_act[rows] = act
        n = informs.sum(1)
        self.slots_given[rows] = n
        self.turn_conf[rows] = np.where(n > 0, (conf * informs).sum(1) / np.maximum(n, 1), 0.0)
        self.register[rows] = 0.5 if register is None else register

    # -- what the policy sees -------------------------------------------------------------------
    def action_mask(self) -> npt.NDArray[np.int8]:
        missing = (self.values == UNKNOWN).any(1)
        unconfirmed = ((self.values > 0) & ~self.confirmed).any(1)
        mask = np.zeros((self.n, N_SYSTEM_ACTS), dtype=np.int8)
        mask[:, SystemAct.GREET] = self.turn == 0
        mask[:, SystemAct.REQUEST_ONE] = mask[:, SystemAct.REQUEST_ALL] = mask[:, SystemAct.SUGGEST] = missing
        mask[:, SystemAct.CONFIRM] = unconfirmed
        mask[:, SystemAct.EXPLAIN] = ~self.explained
        mask[:, SystemAct.OFFER] = ~missing & ~self.offer_accepted
        mask[:, SystemAct.INFORM] = self.requests_pending
        mask[:, SystemAct.ASK_BOOKING] = self.offer_accepted & self.booking_requested & ~self.booking_info
        mask[:, SystemAct.BOOK] = self.offer_accepted & self.booking_info & ~self.booked
        mask[:, SystemAct.REQMORE] = self.offer_accepted
        mask[:, SystemAct.BYE] = 1
        return mask

    def observation(self) -> npt.NDArray[np.float32]:
        lay = self.layout
        k = self.domain.n_slots
        obs = np.zeros((self.n, lay.size), dtype=np.float32)
        obs[:, lay.filled] = self.values != UNKNOWN
        obs[:, lay.conf] = self.conf
        obs[:, lay.confirmed] = self.confirmed
        obs[:, lay.kb_matches] = np.log1p(self.kb_count()) * self._log_norm
        obs[:, lay.offer_accepted] = self.offer_accepted
        obs[:, lay.requests_pending] = self.requests_pending
        obs[:, lay.booking_requested] = self.booking_requested
        obs[:, lay.booking_info] = self.booking_info
        obs[:, lay.booked] = self.booked
        obs[:, lay.explained] = self.explained
        has_user = self.last_user_act >= 0
        obs[self._rows[has_user], lay.user_act.start + self.last_user_act[has_user]] = 1.0
        has_sys = self.last_system_act >= 0
        obs[self._rows[has_sys], lay.system_act.start + self.last_system_act[has_sys]] = 1.0
        obs[:, lay.turn] = np.minimum(self.turn / self.max_turns, 1.0)
        obs[:, lay.slots_given] = self.slots_given / k
        obs[:, lay.turn_conf] = self.turn_conf
        obs[:, lay.register] = self.register
        return obs
