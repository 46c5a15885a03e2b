"""``SegmentDialogueVectorEnv``: determinism, same-step autoreset, info, text and bad arguments.

Also checks, over thousands of dialogues, that no observation feature is the segment (its index
or a segment indicator) or one of the user's behaviour parameters.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from dialogue.acts import N_SYSTEM_ACTS, SystemAct, UserAct
from dialogue.domain import DomainError
from simulators.env import SUCCESS_REWARD, TURN_PENALTY
from simulators.policies import RandomPolicy
from simulators.profiles import PARAMETERS, PROFILES, TRAINING_SEGMENTS, ProfileError
from simulators.vector_env import SegmentDialogueVectorEnv


def play(env: SegmentDialogueVectorEnv, seed: int, steps: int, policy_seed: int = 0) -> list[Any]:
    policy = RandomPolicy(seed=policy_seed)
    obs, info = env.reset(seed=seed)
    out: list[Any] = [(obs, info)]
    for _ in range(steps):
        act = policy(obs, info["action_mask"])
        obs, reward, terminated, truncated, info = env.step(act)
        out.append((act, obs, reward, terminated, truncated, info))
    return out


def same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return bool(a == b)


def test_metadata_and_spaces() -> None:
    env = SegmentDialogueVectorEnv(num_envs=5, domain="hotel")
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert env.observation_space.shape == (5, *env.single_observation_space.shape)
    assert env.action_space.shape == (5,)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)


@pytest.mark.parametrize("domain", ["restaurant", "hotel"])
def test_same_seed_same_trajectory(domain: str) -> None:
    a = play(SegmentDialogueVectorEnv(num_envs=16, domain=domain), seed=5, steps=40)
    b = play(SegmentDialogueVectorEnv(num_envs=16, domain=domain), seed=5, steps=40)
    assert same(a, b)
    assert any(step[3].any() for step in a[1:]), "some dialogues should have ended and restarted"


def test_different_seeds_different_trajectories() -> None:
    a = play(SegmentDialogueVectorEnv(num_envs=16), seed=5, steps=20)
    b = play(SegmentDialogueVectorEnv(num_envs=16), seed=6, steps=20)
    assert not same(a, b)


def test_same_step_autoreset_and_episode_statistics() -> None:
    n = 64
    env = SegmentDialogueVectorEnv(num_envs=n, max_turns=6)
    lay = env.state.layout
    policy = RandomPolicy(seed=1)
    obs, info = env.reset(seed=2)
    ret, length = np.zeros(n), np.zeros(n, dtype=np.int64)
    segment = info["segment"].copy()
    ended_total = 0
    for _ in range(60):
        act = policy(obs, info["action_mask"])
        obs, reward, terminated, truncated, info = env.step(act)
        assert env.observation_space.contains(obs)
        assert not (terminated & truncated).any()
        assert set(np.unique(reward)) <= {TURN_PENALTY, TURN_PENALTY + SUCCESS_REWARD}
        np.testing.assert_array_equal(info["success"], reward > 0)
        assert not (info["success"] & ~terminated).any()
        ret += reward
        length += 1
        ended = terminated | truncated
        np.testing.assert_array_equal(truncated, ~terminated & (length >= 6))
        if ended.any():
            ended_total += int(ended.sum())
            np.testing.assert_allclose(info["episode_return"][ended], ret[ended])
            np.testing.assert_array_equal(info["episode_length"][ended], length[ended])
            np.testing.assert_array_equal(info["episode_segment"][ended], segment[ended])
            final = info["final_obs"][ended]
            np.testing.assert_allclose(final[:, lay.turn], np.minimum(length[ended] / 6, 1.0))
            # The returned observation is already the first of the next dialogue.
            assert (obs[ended, lay.turn] == 0).all()
            assert not obs[ended][:, lay.system_act].any()
            np.testing.assert_array_equal(info["action_mask"][ended, SystemAct.GREET], 1)
            hung_up = info["user_act"][ended] == UserAct.HANGUP
            assert not info["success"][ended][hung_up].any()
        else:
            assert "final_obs" not in info
        ret[ended], length[ended] = 0.0, 0
        segment = info["segment"].copy()
    assert ended_total > n


def test_info_fields() -> None:
    env = SegmentDialogueVectorEnv(num_envs=300, segments=["power", "casual"])
    _, info = env.reset(seed=0)
    assert set(info["segment"]) == {"power", "casual"}
    np.testing.assert_array_equal(env.segment_names[info["segment_index"]], info["segment"])
    assert info["user_params"].shape == (300, len(PARAMETERS))
    for name in ("power", "casual"):
        rows = info["segment"] == name
        assert (info["user_params"][rows] >= PROFILES[name].low).all()
        assert (info["user_params"][rows] <= PROFILES[name].high).all()
    assert info["action_mask"].shape == (300, N_SYSTEM_ACTS)
    assert set(np.unique(info["user_act"])) <= {UserAct.HELLO, UserAct.INFORM}
    assert not info["success"].any()


def test_segment_option() -> None:
    env = SegmentDialogueVectorEnv(num_envs=50)
    obs, info = env.reset(seed=0, options={"segment": "core"})
    assert (info["segment"] == "core").all()
    for _ in range(20):  # restarted dialogues keep the forced segment
        obs, *_, info = env.step(RandomPolicy()(obs, info["action_mask"]))
        assert (info["segment"] == "core").all()
    obs, info = env.reset(seed=0)
    assert set(info["segment"]) == set(TRAINING_SEGMENTS)
    with pytest.raises(ValueError, match="not one of this environment's segments"):
        env.reset(seed=0, options={"segment": "thorough_expert"})
    with pytest.raises(ProfileError):
        env.reset(seed=0, options={"segment": "nobody"})


def test_with_text() -> None:
    env = SegmentDialogueVectorEnv(num_envs=8, with_text=True)
    env.reset(seed=0)
    *_, info = env.step(np.full(8, SystemAct.REQUEST_ALL))
    texts = info["user_utterance"]
    assert len(texts) == 8 and all(isinstance(t, str) and t for t in texts)
    assert "user_utterance" not in SegmentDialogueVectorEnv(num_envs=8).step(np.zeros(8, dtype=np.int64))[4]


def test_no_observation_feature_is_the_segment_or_a_user_parameter() -> None:
    env = SegmentDialogueVectorEnv(num_envs=2000)
    policy = RandomPolicy(seed=3)
    obs, info = env.reset(seed=4)
    observations, segments, params = [obs], [info["segment_index"]], [info["user_params"]]
    for _ in range(5):
        obs, *_, info = env.step(policy(obs, info["action_mask"]))
        observations.append(obs)
        segments.append(info["segment_index"])
        params.append(info["user_params"])
    x = np.concatenate(observations)
    seg = np.concatenate(segments)
    p = np.concatenate(params)
    targets = [seg.astype(np.float32)] + [(seg == s).astype(np.float32) for s in range(len(TRAINING_SEGMENTS))]
    targets += [p[:, j].astype(np.float32) for j in range(p.shape[1])]
    for j in range(x.shape[1]):
        for t in targets:
            assert not np.allclose(x[:, j], t), f"observation feature {j} gives away the user"


# -- bad arguments ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3,), (5,), (4, 2), ()])
def test_wrong_action_shape(shape: tuple[int, ...]) -> None:
    env = SegmentDialogueVectorEnv(num_envs=4)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="expected 4 actions"):
        env.step(np.zeros(shape, dtype=np.int64))


@pytest.mark.parametrize("bad", [-1, N_SYSTEM_ACTS])
def test_action_out_of_range(bad: int) -> None:
    env = SegmentDialogueVectorEnv(num_envs=4)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="actions must be in"):
        env.step(np.array([0, 1, bad, 2]))


@pytest.mark.parametrize("num_envs", [0, -3, 2.5])
def test_bad_num_envs(num_envs: Any) -> None:
    with pytest.raises(ValueError, match="num_envs must be a positive integer"):
        SegmentDialogueVectorEnv(num_envs=num_envs)


def test_other_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_turns"):
        SegmentDialogueVectorEnv(num_envs=2, max_turns=1)
    with pytest.raises(ValueError, match="max_episode_steps"):
        SegmentDialogueVectorEnv(num_envs=2, max_turns=20, max_episode_steps=10)
    assert SegmentDialogueVectorEnv(num_envs=2, max_turns=20, max_episode_steps=20).max_turns == 20
    with pytest.raises(DomainError):
        SegmentDialogueVectorEnv(num_envs=2, domain="mars")
    with pytest.raises(ProfileError):
        SegmentDialogueVectorEnv(num_envs=2, segments=["power", "nobody"])
