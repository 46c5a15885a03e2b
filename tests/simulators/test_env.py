"""``SegmentDialogue-v0``, the single environment: Gymnasium conformance, determinism, the MDP.

- Gymnasium's own ``check_env`` passes (with warnings as errors) for every registered id and
  both domains, and ``gym.make_vec`` builds the vectorised twin with the same spaces.
- The same seed gives identical trajectories; different seeds give different ones.
- The segment is never in the observation: the layout has no such field, and ``info`` carries
  the segment and the user's parameters instead.
- Rewards, termination, truncation, rendering, and clear errors for bad arguments.
"""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import simulators
from dialogue.acts import N_SYSTEM_ACTS, SystemAct, UserAct
from dialogue.domain import DomainError, load_domain
from dialogue.tracker import ObservationLayout
from simulators.env import SUCCESS_REWARD, TURN_PENALTY, SegmentDialogueEnv
from simulators.policies import RandomPolicy, make_policy
from simulators.profiles import PARAMETERS, PROFILES, TRAINING_SEGMENTS, ProfileError, SegmentProfile
from simulators.vector_env import SegmentDialogueVectorEnv

DOMAINS = ("restaurant", "hotel")
Step = tuple[np.ndarray, float, bool, bool, dict[str, Any]]


def saint(**overrides: tuple[float, float]) -> SegmentProfile:
    """A user who never leaves and never mishears: for testing the mechanics, not behaviour."""
    ranges = {p: (0.0, 0.0) for p in PARAMETERS}
    ranges.update(p_know=(1.0, 1.0), patience=(1e6, 1e6), initiative=(1.0, 1.0), relax=(1.0, 1.0))
    ranges.update(overrides)
    return SegmentProfile("saint", ranges)


def play(env: SegmentDialogueEnv, seed: int, episodes: int, policy_seed: int = 0) -> list[Any]:
    """Several episodes from one seeded reset (later resets unseeded), with a seeded random policy."""
    policy = RandomPolicy(seed=policy_seed)
    out: list[Any] = []
    for e in range(episodes):
        obs, info = env.reset(seed=seed if e == 0 else None)
        out.append((obs, info))
        done = False
        while not done:
            act = int(policy(obs[None], info["action_mask"][None])[0])
            obs, reward, terminated, truncated, info = env.step(act)
            out.append((act, obs, reward, terminated, truncated, info))
            done = terminated or truncated
    return out


def same(a: Any, b: Any) -> bool:
    """Deep equality for nested tuples / lists / dicts holding NumPy arrays."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return bool(a == b)


# -- Gymnasium conformance -------------------------------------------------------------------------
@pytest.mark.parametrize("env_id", simulators.REGISTERED_IDS)
@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("render_mode", [None, "ansi"])
def test_gymnasium_env_checker(env_id: str, domain: str, render_mode: str | None) -> None:
    env = gym.make(env_id, domain=domain, render_mode=render_mode)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    assert isinstance(env.unwrapped, SegmentDialogueEnv)
    assert env.unwrapped.domain.name == domain


def test_registration() -> None:
    assert simulators.ENV_ID == "simulators/SegmentDialogue-v0"
    assert simulators.ENV_ID in simulators.REGISTERED_IDS
    for env_id in simulators.REGISTERED_IDS:
        spec = gym.spec(env_id)
        assert spec.max_episode_steps is None  # the environment enforces its own turn limit


@pytest.mark.parametrize("env_id", simulators.REGISTERED_IDS)
@pytest.mark.parametrize("domain", DOMAINS)
def test_make_vec_builds_the_vectorised_twin(env_id: str, domain: str) -> None:
    single = gym.make(env_id, domain=domain)
    vec = gym.make_vec(env_id, num_envs=8, vectorization_mode="vector_entry_point", domain=domain)
    assert isinstance(vec, SegmentDialogueVectorEnv)
    assert vec.num_envs == 8
    assert vec.single_observation_space == single.observation_space
    assert vec.single_action_space == single.action_space
    assert vec.observation_space.shape == (8, *single.observation_space.shape)
    obs, info = vec.reset(seed=0)
    assert obs.shape == (8, *single.observation_space.shape) and vec.observation_space.contains(obs)
    assert info["action_mask"].shape == (8, N_SYSTEM_ACTS)


# -- determinism -----------------------------------------------------------------------------------
@pytest.mark.parametrize("domain", DOMAINS)
def test_same_seed_same_trajectory(domain: str) -> None:
    a = play(SegmentDialogueEnv(domain=domain), seed=7, episodes=5)
    b = play(SegmentDialogueEnv(domain=domain), seed=7, episodes=5)
    assert len(a) > 10
    assert same(a, b)


def test_different_seeds_different_trajectories() -> None:
    a = play(SegmentDialogueEnv(), seed=7, episodes=5)
    b = play(SegmentDialogueEnv(), seed=8, episodes=5)
    assert not same(a, b)


def test_reseeding_the_same_env_repeats_the_dialogue() -> None:
    env = SegmentDialogueEnv()
    first = play(env, seed=3, episodes=1)
    play(env, seed=4, episodes=2)
    assert same(play(env, seed=3, episodes=1), first)


def test_fixed_action_sequence_is_deterministic() -> None:
    actions = [SystemAct.REQUEST_ALL, SystemAct.REQUEST_ONE, SystemAct.SUGGEST, SystemAct.CONFIRM, SystemAct.OFFER]

    def run(seed: int) -> list[Any]:
        env = SegmentDialogueEnv(segments="core")
        out: list[Any] = [env.reset(seed=seed)]
        for act in actions:
            step = env.step(act)
            out.append(step)
            if step[2] or step[3]:
                break
        return out

    assert same(run(11), run(11))
    assert not same(run(11), run(12))


# -- what the policy sees and what info tells -----------------------------------------------------
@pytest.mark.parametrize("domain", DOMAINS)
def test_observation_is_the_layout_and_info_carries_the_user(domain: str) -> None:
    env = SegmentDialogueEnv(domain=domain)
    size = ObservationLayout(load_domain(domain).n_slots).size
    assert env.observation_space.shape == (size,) and env.observation_space.dtype == np.float32
    assert env.action_space == gym.spaces.Discrete(N_SYSTEM_ACTS)
    seen = set()
    for seed in range(30):
        obs, info = env.reset(seed=seed)
        assert obs.shape == (size,) and env.observation_space.contains(obs)
        assert info["segment"] in TRAINING_SEGMENTS
        seen.add(info["segment"])
        params = info["user_params"]
        assert list(params) == list(PARAMETERS)
        profile = PROFILES[info["segment"]]
        for name, value in params.items():
            lo, hi = profile.ranges[name]
            assert lo <= value <= hi, name
        assert isinstance(info["user_utterance"], str) and info["user_utterance"]
        assert info["user_act"] in {a.name for a in UserAct}
        assert info["action_mask"].shape == (N_SYSTEM_ACTS,) and info["action_mask"].dtype == np.int8
        assert info["success"] is False
    assert seen == set(TRAINING_SEGMENTS)


def test_info_after_a_step() -> None:
    env = SegmentDialogueEnv(domain="hotel")
    _, info = env.reset(seed=0)
    segment, params = info["segment"], info["user_params"]
    *_, info = env.step(SystemAct.REQUEST_ALL)
    assert info["segment"] == segment and info["user_params"] == params
    assert info["turn"] == 1
    for slot, value, conf in info["nlu_informs"]:
        assert slot in env.domain.slots and 0.0 <= conf <= 1.0
        assert value == "dontcare" or value in env.domain.values[env.domain.slots.index(slot)]
    assert len(info["nlu_informs"]) == len(info["user_informs"])


def test_the_info_mask_is_the_one_after_the_users_answer() -> None:
    """What the next act must obey (a policy reads ``info["action_mask"]``)."""
    env = SegmentDialogueEnv(domain="restaurant")
    _, info = env.reset(seed=3)
    steps = 0
    for act in (SystemAct.REQUEST_ALL, SystemAct.REQUEST_ONE, SystemAct.SUGGEST, SystemAct.CONFIRM, SystemAct.OFFER):
        if info["action_mask"][act]:
            _, _, terminated, _, info = env.step(act)
            steps += 1
            assert np.array_equal(info["action_mask"], env.state.action_mask())
            assert info["turn"] == env.state.turn
            if terminated:
                break
    assert steps >= 2


def test_segment_option_and_segments_argument() -> None:
    env = SegmentDialogueEnv(segments=["casual"])
    for seed in range(5):
        assert env.reset(seed=seed)[1]["segment"] == "casual"
    env = SegmentDialogueEnv()
    for seed in range(5):
        assert env.reset(seed=seed, options={"segment": "power"})[1]["segment"] == "power"
    with pytest.raises(ProfileError, match="unknown segment"):
        env.reset(seed=0, options={"segment": "nobody"})
    custom = saint()
    env = SegmentDialogueEnv(segments=custom)
    _, info = env.reset(seed=0)
    assert info["segment"] == "saint" and info["user_params"]["patience"] == 1e6


# -- the MDP ---------------------------------------------------------------------------------------
def test_turn_penalty_and_truncation() -> None:
    env = SegmentDialogueEnv(segments=saint(), max_turns=3)
    env.reset(seed=0)
    steps = [env.step(SystemAct.EXPLAIN), env.step(SystemAct.REQMORE), env.step(SystemAct.REQMORE)]
    assert [s[1] for s in steps] == [TURN_PENALTY] * 3
    assert [s[2] for s in steps] == [False] * 3
    assert [s[3] for s in steps] == [False, False, True]
    assert steps[-1][0][env.state.layout.turn] == 1.0
    with pytest.raises(RuntimeError, match="reset"):
        env.step(SystemAct.BYE)


def test_success_pays_the_bonus_once() -> None:
    env = SegmentDialogueEnv(segments=saint(), max_turns=30)
    policy = make_policy("power", env.state.layout)
    for seed in range(40):
        obs, info = env.reset(seed=seed)
        rewards, done = [], False
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(obs[None], info["action_mask"][None])[0])
            rewards.append(reward)
            done = terminated or truncated
        assert terminated and info["success"] and info["user_act"] == "BYE"
        assert rewards == [TURN_PENALTY] * (len(rewards) - 1) + [TURN_PENALTY + SUCCESS_REWARD]


def test_premature_bye_terminates_without_success() -> None:
    env = SegmentDialogueEnv()
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(SystemAct.BYE)
    assert terminated and not truncated and reward == TURN_PENALTY and not info["success"]


def test_hangup_terminates_without_success() -> None:
    env = SegmentDialogueEnv(segments=saint(hazard=(1.0, 1.0)))
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(SystemAct.REQUEST_ONE)
    assert terminated and info["user_act"] == "HANGUP" and reward == TURN_PENALTY and not info["success"]


def test_render_ansi_transcript() -> None:
    env = SegmentDialogueEnv(render_mode="ansi")
    _, info = env.reset(seed=0)
    env.step(SystemAct.GREET)
    env.step(SystemAct.REQUEST_ONE)
    text = env.render()
    assert isinstance(text, str)
    lines = text.splitlines()
    assert lines[0] == f"USER: {info['user_utterance']}"
    assert lines[1].startswith("SYSTEM [GREET]: ") and lines[3].startswith("SYSTEM [REQUEST_ONE]: ")
    assert lines[2].startswith("USER [") and len(lines) == 5
    assert SegmentDialogueEnv().render() is None


def test_numpy_actions_and_domain_objects_are_accepted() -> None:
    env = SegmentDialogueEnv(domain=load_domain("hotel"))
    env.reset(seed=0)
    obs, *_ = env.step(np.int64(SystemAct.REQUEST_ALL))
    assert env.observation_space.contains(obs)


# -- bad arguments ---------------------------------------------------------------------------------
def test_unknown_domain() -> None:
    with pytest.raises(DomainError, match="unknown domain 'mars'"):
        gym.make(simulators.ENV_ID, domain="mars")


@pytest.mark.parametrize("segments", ["nobody", ["power", "nobody"], []])
def test_unknown_segment(segments: Any) -> None:
    with pytest.raises(ProfileError):
        gym.make(simulators.ENV_ID, segments=segments)


@pytest.mark.parametrize("max_turns", [1, 0, -5, 2.5, True, "20"])
def test_bad_max_turns(max_turns: Any) -> None:
    with pytest.raises(ValueError, match="max_turns must be an integer >= 2"):
        SegmentDialogueEnv(max_turns=max_turns)
    assert SegmentDialogueEnv(max_turns=2).max_turns == 2


def test_bad_render_mode() -> None:
    with pytest.raises(ValueError, match="render_mode must be one of"):
        SegmentDialogueEnv(render_mode="human")


@pytest.mark.parametrize("action", [-1, N_SYSTEM_ACTS, 100])
def test_action_out_of_range(action: int) -> None:
    env = SegmentDialogueEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action must be in"):
        env.step(action)


def test_step_before_reset() -> None:
    with pytest.raises(RuntimeError, match="reset"):
        SegmentDialogueEnv().step(SystemAct.GREET)
