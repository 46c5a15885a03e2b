"""``SegmentDialogue-v0``: one conversation with a simulated user of a sampled segment.

Each episode samples a segment (uniformly from the environment's profiles, or the one named in
``reset(options={"segment": name})``), a user from that segment's parameter ranges and a goal. The
user speaks first; every step is one system act followed by the user's answer.
``reset(options={"same_user": True})`` keeps the previous episode's user (segment and behaviour
parameters; a new goal): a returning user. ``info["conversation_index"]`` counts a user's
conversations from 0.

Reward is PyDial's: -1 per turn and +20 when the user leaves satisfied (``terminated`` with
``info["success"]``). A user who hangs up, or a system BYE before the task is done, ends the
episode without the bonus. Hitting ``max_turns`` truncates the episode; the turn limit is part of
the MDP (the observation carries turn / max_turns), so the environment enforces it itself rather
than through a TimeLimit wrapper.

The observation is the system's view only (``dialogue.tracker.ObservationLayout``); the segment,
the sampled user parameters, the user's acts and text, the action mask and success are in ``info``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt

from dialogue.acts import N_SYSTEM_ACTS, SystemAct, UserAct, UserTurn
from dialogue.domain import Domain, Entity, load_domain
from dialogue.tracker import DialogueState
from simulators.profiles import SegmentProfile, SegmentSpec, resolve_profiles
from simulators.user import CONTINUE, SUCCESS, AgendaUser
from simulators.user_nlg import register_of, turn_style, user_text

SUCCESS_REWARD = 20.0
TURN_PENALTY = -1.0
DEFAULT_MAX_TURNS = 20
_BUFFER = 512


def check_max_turns(max_turns: int) -> int:
    """The turn limit, or a ValueError saying why it cannot be used."""
    if not isinstance(max_turns, (int, np.integer)) or isinstance(max_turns, bool) or max_turns < 2:
        raise ValueError(f"max_turns must be an integer >= 2, got {max_turns!r}")
    return int(max_turns)


class SegmentDialogueEnv(gym.Env[npt.NDArray[np.float32], np.int64]):
    """A dialogue with one simulated user; see the module docstring for the MDP."""

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        domain: str | Domain = "restaurant",
        segments: SegmentSpec = None,
        max_turns: int = DEFAULT_MAX_TURNS,
        render_mode: str | None = None,
    ) -> None:
        self.domain = load_domain(domain) if isinstance(domain, str) else domain
        self.profiles = resolve_profiles(segments)
        self.max_turns = check_max_turns(max_turns)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.state = DialogueState(self.domain, self.max_turns)
        size = self.state.layout.size
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(size,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(N_SYSTEM_ACTS)
        self.user: AgendaUser | None = None
        self.profile: SegmentProfile = self.profiles[0]
        self.offered: Entity | None = None
        self._buf: list[float] = []
        self._pos = 0
        self._done = True
        self._transcript: list[str] = []
        self._user_params: npt.NDArray[np.float64] | None = None
        self._conversation = 0

    # -- randomness: every draw comes from self.np_random, a block at a time ---------------
    def _uniform(self) -> float:
        if self._pos >= len(self._buf):
            self._buf = self.np_random.random(_BUFFER).tolist()
            self._pos = 0
        self._pos += 1
        return self._buf[self._pos - 1]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        super().reset(seed=seed)
        self._buf, self._pos = self.np_random.random(_BUFFER).tolist(), 0
        name = (options or {}).get("segment")
        same_user = bool((options or {}).get("same_user", False))
        if same_user and self._user_params is None:
            raise ValueError("same_user needs an earlier episode's user: reset once without it first")
        if same_user and name is not None and resolve_profiles(name)[0] != self.profile:
            raise ValueError(f"the returning user is a {self.profile.name} user, not {name!r}")
        if same_user:
            assert self._user_params is not None
            params = self._user_params
            self._conversation += 1
        elif name is not None:
            profile = resolve_profiles(name)[0]
            if profile not in self.profiles:
                raise ValueError(f"segment {profile.name!r} is not one of this environment's segments")
            self.profile = profile
        else:
            self.profile = self.profiles[min(int(self._uniform() * len(self.profiles)), len(self.profiles) - 1)]
        if not same_user:
            params = self.profile.sample(self.np_random)[0]
            self._user_params = params
            self._conversation = 0
        self.user = AgendaUser(self.domain, params, self._uniform)
        self.state.reset()
        self.offered = None
        self._done = False
        turn = self.user.opening()
        heard = self.user.heard(turn.informs)
        style = turn_style(self.user.params["verbosity"], self._uniform(), opening=True)
        self.state.user_acted(turn.act, heard, register=register_of(style))
        info = self._get_info(turn, heard, style, success=False)
        self._transcript = [f"USER: {info['user_utterance']}"]
        return self.state.observation(), info

    def step(self, action: np.int64 | int) -> tuple[npt.NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        if self._done or self.user is None:
            raise RuntimeError("the episode is over: call reset() before step()")
        act = int(action)
        if not 0 <= act < N_SYSTEM_ACTS:
            raise ValueError(f"action must be in 0..{N_SYSTEM_ACTS - 1}, got {action!r}")
        st = self.state
        target = st.target_slot(act)
        heard = list(st.values)
        kb_count = st.kb_count()
        first_turn = st.turn == 0
        if act == SystemAct.OFFER:
            self.offered = st.offer_candidate()
        if self.render_mode == "ansi":
            from dialogue.nlg import system_text

            self._transcript.append(f"SYSTEM [{SystemAct(act).name}]: {system_text(act, st, self.offered)}")
        st.system_acted(act)
        turn, observed, style, reward, terminated, info = self.answer(act, target, heard, kb_count, first_turn)
        st.user_acted(
            turn.act,
            observed,
            target=target,
            offer_count=kb_count if act == SystemAct.OFFER else 0,
            booking_details=bool(turn.booking),
            register=register_of(style),
        )
        info["turn"], info["action_mask"] = st.turn, st.action_mask()  # after the user's turn
        truncated = not terminated and st.turn >= self.max_turns
        self._done = terminated or truncated
        if self.render_mode == "ansi":
            self._transcript.append(f"USER [{turn.act.name}]: {info['user_utterance']}")
        return st.observation(), reward, terminated, truncated, info

    def answer(
        self, act: int, target: int, heard: list[int], kb_count: int, first_turn: bool
    ) -> tuple[UserTurn, list[tuple[int, int, float]], int, float, bool, dict[str, Any]]:
        """The user's answer to a system act as another dialogue manager saw the dialogue (``heard``: its
        slot values, ``kb_count``: the entities it matched): the turn, what the simulated NLU channel
        makes of it, its style, the reward and whether the user ended the dialogue, and the info of
        ``step``. ``step`` calls it with the environment's own tracker; an evaluation that runs the
        user against the service's own turn logic calls it with the service's view, and keeps the
        turn limit itself."""
        if self.user is None:
            raise RuntimeError("no user yet: call reset() first")
        turn, outcome = self.user.respond(act, target, heard, kb_count, first_turn)
        observed = self.user.heard(turn.informs)
        style = turn_style(self.user.params["verbosity"], self._uniform(), False, self._uniform())
        reward = TURN_PENALTY + (SUCCESS_REWARD if outcome == SUCCESS else 0.0)
        info = self._get_info(turn, observed, style, success=outcome == SUCCESS)
        return turn, observed, style, reward, outcome != CONTINUE, info

    def _get_info(
        self, turn: UserTurn, observed: list[tuple[int, int, float]], style: int, success: bool
    ) -> dict[str, Any]:
        assert self.user is not None
        dom = self.domain
        return {
            "segment": self.profile.name,
            "user_params": dict(self.user.params),
            "user_act": UserAct(turn.act).name,
            "user_informs": [(dom.slots[k], dom.value_name(k, v)) for k, v in turn.informs],
            "user_requests": list(turn.requests),
            "user_booking": dict(turn.booking),
            "nlu_informs": [(dom.slots[k], dom.value_name(k, v), c) for k, v, c in observed],
            "user_utterance": user_text(turn, dom, style, self._uniform),
            "user_register": register_of(style),
            "action_mask": self.state.action_mask(),
            "success": success,
            "turn": self.state.turn,
            "conversation_index": self._conversation,
        }

    def render(self) -> str | None:
        """With ``render_mode="ansi"``: the transcript so far, both sides, as text."""
        if self.render_mode == "ansi":
            return "\n".join(self._transcript)
        return None
