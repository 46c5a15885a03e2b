"""The vectorised ``SegmentDialogue-v0``: thousands of dialogues stepped at once in NumPy.

This is the ``vector_entry_point`` of the environment (``gymnasium.make_vec(...,
vectorization_mode="vector_entry_point")``). It implements the user model of
``simulators.user`` on arrays, with the same constants, and the system's belief with
``dialogue.batch_tracker``. Text is generated only with ``with_text=True`` (it goes through the
scalar NLG, one row at a time, and costs most of the speed).

Episodes reset in the same step they end (``AutoresetMode.SAME_STEP``): the returned observation
of a finished row is the first of its next episode; ``info["final_obs"]`` holds the last one, and
``info["success"]``, ``info["episode_return"]``, ``info["episode_length"]`` and
``info["episode_segment"]`` describe the finished episode on the rows where
``terminated | truncated``.

Returning users: with ``conversations_per_user=K`` (default 1: a new user every conversation) a
row keeps its user (segment and behaviour parameters; a new goal each time) for K consecutive
conversations, then draws a new one; ``info["conversation_index"]`` is the conversation's index
within its user (0 for a new user). ``reset`` always starts new users. The random draws are the
same as with K = 1 (a returning row draws a user and discards it), so K = 1 is the old behaviour.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from dialogue.acts import N_SYSTEM_ACTS, SystemAct, UserAct, UserTurn
from dialogue.batch_tracker import BatchDialogueState
from dialogue.domain import DONTCARE, Domain, load_domain
from simulators import user as um
from simulators.env import DEFAULT_MAX_TURNS, SUCCESS_REWARD, TURN_PENALTY, check_max_turns
from simulators.profiles import PARAM_INDEX, PARAMETERS, SegmentSpec, resolve_profiles
from simulators.user_nlg import turn_styles, user_text

_I = PARAM_INDEX


class SegmentDialogueVectorEnv(VectorEnv):
    """``num_envs`` dialogues with simulated users; the same MDP as ``SegmentDialogueEnv``."""

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        domain: str | Domain = "restaurant",
        segments: SegmentSpec = None,
        max_turns: int = DEFAULT_MAX_TURNS,
        with_text: bool = False,
        max_episode_steps: int | None = None,
        conversations_per_user: int = 1,
    ) -> None:
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        if max_episode_steps is not None and max_episode_steps != max_turns:
            raise ValueError("the turn limit is the environment's max_turns; do not set max_episode_steps")
        if (
            not isinstance(conversations_per_user, (int, np.integer))
            or isinstance(conversations_per_user, bool)
            or conversations_per_user < 1
        ):
            raise ValueError(f"conversations_per_user must be a positive integer, got {conversations_per_user!r}")
        self.conversations_per_user = int(conversations_per_user)
        self.num_envs = int(num_envs)
        self.domain = load_domain(domain) if isinstance(domain, str) else domain
        self.profiles = resolve_profiles(segments)
        self.segment_names = np.array([p.name for p in self.profiles])
        self.max_turns = check_max_turns(max_turns)
        self.with_text = with_text
        self.state = BatchDialogueState(self.domain, self.max_turns, self.num_envs)
        self.single_observation_space = gym.spaces.Box(0.0, 1.0, shape=(self.state.layout.size,), dtype=np.float32)
        self.single_action_space = gym.spaces.Discrete(N_SYSTEM_ACTS)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        n, k = self.num_envs, self.domain.n_slots
        self._k = k
        self._rows = np.arange(n)
        self._eye = np.eye(k, dtype=bool)
        self._n_values = np.array(self.domain.n_values)
        self._kb = np.array([e.values for e in self.domain.entities], dtype=np.int64)
        self._low = np.stack([p.low for p in self.profiles])
        self._high = np.stack([p.high for p in self.profiles])
        # The user: parameters, goal and agenda progress per row.
        self.segment = np.zeros(n, dtype=np.int64)
        self.params = np.zeros((n, len(PARAMETERS)))
        self.goal = np.zeros((n, k), dtype=np.int64)
        self.knows = np.zeros((n, k), dtype=bool)
        self.told = np.zeros((n, k), dtype=bool)
        self.booking_values = np.zeros((n, len(self.domain.booking)), dtype=np.int64)
        self.annoyance = np.zeros(n)
        self.guided = np.zeros(n, dtype=bool)  # the user has had the explanation
        self.offer_ok = np.zeros(n, dtype=bool)  # the user accepted an offer
        self.offer_fits = np.zeros(n, dtype=bool)  # ... and the accepted entity fits its goal
        self.requests_voiced = np.zeros(n, dtype=bool)
        self.requests_done = np.zeros(n, dtype=bool)
        self.booking_given = np.zeros(n, dtype=bool)
        self.booked = np.zeros(n, dtype=bool)
        self.wants_info = np.zeros(n, dtype=bool)
        self.wants_booking = np.zeros(n, dtype=bool)
        self.request_slot = np.zeros(n, dtype=np.int64)
        self.episode_return = np.zeros(n)
        self.turn_style = np.zeros(n, dtype=np.int64)
        self.conversation = np.zeros(n, dtype=np.int64)  # index of the conversation within its user
        self._forced_segment: int | None = None

    @property
    def task_names(self) -> list[str]:
        """The segment of each ``info["segment_index"]`` value (for learners that need names)."""
        return [p.name for p in self.profiles]

    # -- reset ---------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        super().reset(seed=seed)
        name = (options or {}).get("segment")
        self._forced_segment = None
        if name is not None:
            profile = resolve_profiles(name)[0]
            if profile not in self.profiles:
                raise ValueError(f"segment {profile.name!r} is not one of this environment's segments")
            self._forced_segment = self.profiles.index(profile)
        self.conversation[:] = -1  # every row starts a new user
        act = self._reset_rows(self._rows)
        return self.state.observation(), self._info(act)

    def _reset_rows(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Start new dialogues in ``rows`` (with a new user, or the same one while it returns);
        returns the opening user acts."""
        rng = self.np_random
        m, k = len(rows), self._k
        if self._forced_segment is not None:
            seg = np.full(m, self._forced_segment)
        else:
            seg = np.minimum((rng.random(m) * len(self.profiles)).astype(np.int64), len(self.profiles) - 1)
        params = self._low[seg] + (self._high[seg] - self._low[seg]) * rng.random((m, len(PARAMETERS)))
        conversation = (self.conversation[rows] + 1) % self.conversations_per_user
        returning = conversation > 0
        self.conversation[rows] = conversation
        seg = np.where(returning, self.segment[rows], seg)
        params = np.where(returning[:, None], self.params[rows], params)
        self.segment[rows] = seg
        self.params[rows] = params
        u = rng.random((m, 6 + k))
        n_e = len(self._kb)
        goal = self._kb[np.minimum((u[:, 0] * n_e).astype(np.int64), n_e - 1)].copy()
        alter = np.nonzero(u[:, 1] < um.P_NO_MATCH)[0]
        slot = np.minimum((u[alter, 2] * k).astype(np.int64), k - 1)
        n_v = self._n_values[slot]
        goal[alter, slot] = 1 + np.minimum((u[alter, 3] * n_v).astype(np.int64), n_v - 1)
        self.goal[rows] = goal
        self.knows[rows] = u[:, 6:] < params[:, _I["p_know"], None]
        self.wants_info[rows] = u[:, 4] < um.P_WANTS_INFO
        self.wants_booking[rows] = u[:, 5] < um.P_WANTS_BOOKING
        self.request_slot[rows] = rng.integers(0, len(self.domain.requestable), m)
        sizes = np.array([len(v) for v in self.domain.booking.values()])
        self.booking_values[rows] = (rng.random((m, len(sizes))) * sizes).astype(np.int64)
        self.annoyance[rows] = 0.0
        for flag in (self.guided, self.offer_ok, self.offer_fits, self.requests_voiced, self.booking_given):
            flag[rows] = False
        self.requests_done[rows] = ~self.wants_info[rows]
        self.booked[rows] = ~self.wants_booking[rows]
        self.episode_return[rows] = 0.0
        # The opening turn.
        informs = self.knows[rows] & (rng.random((m, k)) < params[:, _I["initiative"], None])
        self.told[rows] = informs
        act = np.where(informs.any(1), UserAct.INFORM, UserAct.HELLO).astype(np.int64)
        heard, conf = self._channel(rows, informs, self.goal[rows], np.zeros(m, dtype=bool))
        self.state.reset(rows)
        self.state.user_acted(rows, act, informs, heard, conf, register=self._draw_style(rows, opening=True) / 2.0)
        return act

    def _draw_style(self, rows: npt.NDArray[np.int64] | slice, opening: bool) -> npt.NDArray[np.float64]:
        """The style of this turn's text per row (as ``user_nlg.turn_style``), kept for the text."""
        v = self.params[rows, _I["verbosity"]]
        u = self.np_random.random((2, *v.shape))
        style = turn_styles(v, u[0], opening, u[1])
        self.turn_style[rows] = style
        return style.astype(np.float64)

    # -- the NLU channel ---------------------------------------------------------------------
    def _channel(
        self,
        rows: npt.NDArray[np.int64] | slice,
        informs: npt.NDArray[np.bool_],
        said: npt.NDArray[np.int64],
        picked: npt.NDArray[np.bool_],
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        m = informs.shape[0]
        u = self.np_random.random((m, 3, self._k))
        err = self.params[rows, _I["error_rate"]] * np.where(self.guided[rows], um.GUIDED_FACTOR, 1.0)
        err = err * np.where(picked, um.PICKED_FACTOR, 1.0)
        wrong = (u[:, 0] < err[:, None]) & (said != DONTCARE) & informs
        other = 1 + np.minimum((u[:, 1] * (self._n_values - 1)).astype(np.int64), self._n_values - 2)
        other += other >= said
        heard = np.where(wrong, other, said)
        conf = np.where(
            wrong, um.CONF_WRONG[0] + um.CONF_WRONG[1] * u[:, 2], um.CONF_RIGHT[0] + um.CONF_RIGHT[1] * u[:, 2]
        )
        conf = np.where(said == DONTCARE, 1.0, conf)
        return heard, conf

    # -- step ----------------------------------------------------------------------------------
    def step(
        self, actions: npt.ArrayLike
    ) -> tuple[
        npt.NDArray[np.float32], npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.bool_], dict[str, Any]
    ]:
        a = np.asarray(actions, dtype=np.int64).reshape(-1)
        if a.shape != (self.num_envs,):
            raise ValueError(f"expected {self.num_envs} actions, got shape {np.shape(actions)}")
        if (a < 0).any() or (a >= N_SYSTEM_ACTS).any():
            raise ValueError(f"actions must be in 0..{N_SYSTEM_ACTS - 1}")
        st, p, rows = self.state, self.params, self._rows
        n, k = self.num_envs, self._k
        any_missing, first_missing = st.first_missing()
        has_confirm, confirm_target = st.confirm_target()
        target = np.where(
            a == SystemAct.CONFIRM, np.where(has_confirm, confirm_target, -1), np.where(any_missing, first_missing, -1)
        )
        heard_before = st.values.copy()
        kb = st.kb_count()
        first_turn = st.turn == 0
        st.system_acted(a)

        u = self.np_random.random((n, k + 6))
        u_vol, u_conf, u_relax, u_pick, u_wish, u_book, u_hazard = (
            u[:, :k],
            u[:, k],
            u[:, k + 1],
            u[:, k + 2],
            u[:, k + 3],
            u[:, k + 4],
            u[:, k + 5],
        )
        initiative = p[:, _I["initiative"]]
        act = np.full(n, UserAct.CONFUSED, dtype=np.int64)
        cost = np.full(n, um.INVALID_COST)
        informs = np.zeros((n, k), dtype=bool)
        said = self.goal.copy()
        outcome = np.zeros(n, dtype=np.int64)
        picked = np.zeros(n, dtype=bool)
        details = np.zeros(n, dtype=bool)
        volunteer = ~self.told & self.knows & (u_vol < initiative[:, None])
        onehot_missing = self._eye[first_missing]
        knows_missing = self.knows[rows, first_missing]

        def set_rows(
            m: npt.NDArray[np.bool_],
            user_act: int | npt.NDArray[np.int64],
            c: float | npt.NDArray[np.float64] = 0.0,
            say: npt.NDArray[np.bool_] | None = None,
        ) -> None:
            act[m] = user_act[m] if isinstance(user_act, np.ndarray) else user_act
            cost[m] = c[m] if isinstance(c, np.ndarray) else c
            if say is not None:
                informs[m] = say[m]

        m = (a == SystemAct.GREET) & first_turn
        set_rows(m, np.where(volunteer.any(1), UserAct.INFORM, UserAct.HELLO), say=volunteer)
        m = (a == SystemAct.REQUEST_ONE) & any_missing
        extra = ~self.told & self.knows & (u_vol < um.ANSWER_EXTRA * initiative[:, None]) & ~onehot_missing
        set_rows(m & knows_missing, UserAct.INFORM, say=onehot_missing | extra)
        set_rows(m & ~knows_missing, UserAct.DONT_KNOW, um.DONT_KNOW_COST)
        m = (a == SystemAct.REQUEST_ALL) & any_missing
        confusion = p[:, _I["confusion"]] * np.where(self.guided, um.GUIDED_FACTOR, 1.0)
        confused = m & ((heard_before == 0).sum(1) >= 2) & (u_conf < confusion)
        set_rows(confused, UserAct.CONFUSED, um.CONFUSION_COST)
        say_all = (heard_before == 0) & self.knows
        m &= ~confused
        set_rows(m & say_all.any(1), UserAct.INFORM, say=say_all)
        set_rows(m & ~say_all.any(1), UserAct.DONT_KNOW, um.DONT_KNOW_COST)
        m = (a == SystemAct.SUGGEST) & any_missing
        set_rows(m, UserAct.INFORM, np.where(knows_missing, p[:, _I["suggest_cost"]], 0.0), say=onehot_missing)
        picked |= m & ~knows_missing
        self.knows[rows[m], first_missing[m]] = True
        m = (a == SystemAct.CONFIRM) & has_confirm
        goal_t = self.goal[rows, confirm_target]
        fit_t = (goal_t == DONTCARE) | (heard_before[rows, confirm_target] == goal_t)
        set_rows(m & fit_t, UserAct.AFFIRM, p[:, _I["confirm_cost"]])
        set_rows(m & ~fit_t, UserAct.NEGATE, p[:, _I["confirm_cost"]], say=self._eye[confirm_target])
        self.offer_ok &= ~(m & ~fit_t)
        m = (a == SystemAct.EXPLAIN) & ~self.guided
        set_rows(m, UserAct.ACK, p[:, _I["explain_cost"]])
        self.guided |= m
        # OFFER
        m = (a == SystemAct.OFFER) & ~any_missing & ~self.offer_ok
        fits = (self.goal == DONTCARE) | (heard_before == self.goal)
        wrong = ~fits.all(1)
        noticed = wrong & ((kb == 0) | (u_pick < p[:, _I["vigilance"]]))
        set_rows(m & noticed, UserAct.NEGATE, um.REJECT_COST, say=self._eye[(~fits).argmax(1)])
        no_match = np.nonzero(m & ~wrong & (kb == 0))[0]
        if len(no_match):
            g = self.goal[no_match]
            trial = np.repeat(g[:, None, :], k, axis=1)
            trial[:, self._eye] = DONTCARE
            relaxable = (self.domain.matches.count_batch(trial.reshape(-1, k)).reshape(-1, k) > 0) & (g > 0)
            n_opt = relaxable.sum(1)
            nth = np.minimum((u_pick[no_match] * n_opt).astype(np.int64), np.maximum(n_opt - 1, 0))
            choice = (relaxable.cumsum(1) > nth[:, None]).argmax(1)
            relax = (n_opt > 0) & (u_relax[no_match] < p[no_match, _I["relax"]])
            r, c = no_match[relax], choice[relax]
            self.goal[r, c] = DONTCARE
            said[r, c] = DONTCARE
            act[r], cost[r], informs[r, c] = UserAct.RELAX, 0.0, True
            leave = no_match[~relax]
            act[leave], cost[leave], outcome[leave] = UserAct.HANGUP, 0.0, um.FAILURE
        accept = m & ~noticed & (kb > 0)
        self.offer_ok |= accept
        self.offer_fits = np.where(accept, ~wrong, self.offer_fits)
        wish = accept.copy()
        m = (a == SystemAct.INFORM) & self.requests_voiced & ~self.requests_done
        self.requests_done |= m
        wish |= m
        m = (a == SystemAct.ASK_BOOKING) & self.offer_ok & ~self.booking_given & ~self.booked
        set_rows(m, UserAct.BOOK)
        details |= m
        self.booking_given |= m
        m = (a == SystemAct.BOOK) & self.offer_ok & self.booking_given & ~self.booked
        self.booked |= m
        wish |= m
        prompted = (a == SystemAct.REQMORE) & self.offer_ok
        wish |= prompted
        self._next_wish(wish, prompted, u_wish, u_book, act, cost, outcome, details)
        m = a == SystemAct.BYE
        done = self.offer_ok & self.requests_done & self.booked & self.offer_fits
        act[m], cost[m], outcome[m] = UserAct.BYE, 0.0, np.where(done[m], um.SUCCESS, um.FAILURE)

        # Every turn tires the user; it may hang up.
        self.annoyance += cost
        going = outcome == um.CONTINUE
        self.annoyance += np.where(going, p[:, _I["turn_cost"]], 0.0)
        hang = going & ((self.annoyance >= p[:, _I["patience"]]) | (u_hazard < p[:, _I["hazard"]]))
        act[hang], outcome[hang] = UserAct.HANGUP, um.FAILURE
        informs[hang] = False
        self.told |= informs

        heard, conf = self._channel(slice(None), informs, said, picked)
        st.user_acted(
            slice(None),
            act,
            informs,
            heard,
            conf,
            target=target,
            offer_count=np.where(a == SystemAct.OFFER, kb, 0),
            booking_details=details,
            register=self._draw_style(slice(None), opening=False) / 2.0,
        )
        reward = TURN_PENALTY + SUCCESS_REWARD * (outcome == um.SUCCESS)
        self.episode_return += reward
        terminated = outcome != um.CONTINUE
        truncated = ~terminated & (st.turn >= self.max_turns)
        obs = st.observation()
        ended = terminated | truncated
        texts = self._texts(act, informs, said, details) if self.with_text else None
        finished: dict[str, Any] = {}
        done_rows = np.nonzero(ended)[0]
        if len(done_rows):
            finished = {
                "final_obs": obs.copy(),
                "episode_return": self.episode_return.copy(),
                "episode_length": st.turn.copy(),
                "episode_segment": self.segment_names[self.segment],
            }
            self._reset_rows(done_rows)
            obs[done_rows] = st.observation()[done_rows]
        info = self._info(act)
        info.update(finished)
        info["success"] = outcome == um.SUCCESS
        info["user_informs"] = informs
        if texts is not None:
            info["user_utterance"] = texts
        return obs, reward, terminated, truncated, info

    def _next_wish(
        self,
        wish: npt.NDArray[np.bool_],
        prompted: npt.NDArray[np.bool_],
        u_wish: npt.NDArray[np.float64],
        u_book: npt.NDArray[np.float64],
        act: npt.NDArray[np.int64],
        cost: npt.NDArray[np.float64],
        outcome: npt.NDArray[np.int64],
        details: npt.NDArray[np.bool_],
    ) -> None:
        """As ``AgendaUser._next_wish`` for the rows in ``wish``."""
        initiative = self.params[:, _I["initiative"]]
        cost[wish] = 0.0
        done = wish & self.offer_ok & self.requests_done & self.booked
        act[done], outcome[done] = UserAct.BYE, np.where(self.offer_fits[done], um.SUCCESS, um.FAILURE)
        rest = wish & ~done
        voice = rest & (prompted | (u_wish < initiative))
        act[rest & ~voice] = UserAct.ACK
        req = voice & ~self.requests_done
        act[req] = UserAct.REQUEST
        self.requests_voiced |= req
        book = voice & ~req
        give = book & ~self.booking_given & (prompted | (u_book < initiative))
        act[book] = UserAct.BOOK
        details |= give
        self.booking_given |= give

    # -- info and text -------------------------------------------------------------------------
    def _info(self, act: npt.NDArray[np.int64]) -> dict[str, Any]:
        return {
            "segment": self.segment_names[self.segment],
            "segment_index": self.segment.copy(),
            "user_params": self.params.copy(),
            "conversation_index": self.conversation.copy(),
            "user_act": act,
            "action_mask": self.state.action_mask(),
            "success": np.zeros(self.num_envs, dtype=bool),
        }

    def _texts(
        self,
        act: npt.NDArray[np.int64],
        informs: npt.NDArray[np.bool_],
        said: npt.NDArray[np.int64],
        details: npt.NDArray[np.bool_],
    ) -> list[str]:
        rng = self.np_random
        booking_slots = list(self.domain.booking)
        out = []
        for i in range(self.num_envs):
            ua = UserAct(int(act[i]))
            turn = UserTurn(
                ua,
                tuple((int(k), int(said[i, k])) for k in np.nonzero(informs[i])[0]),
                (self.domain.requestable[self.request_slot[i]],) if ua == UserAct.REQUEST else (),
                {s: self.domain.booking[s][self.booking_values[i, j]] for j, s in enumerate(booking_slots)}
                if details[i]
                else {},
            )
            out.append(user_text(turn, self.domain, int(self.turn_style[i]), lambda: float(rng.random())))
        return out
