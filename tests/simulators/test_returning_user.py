"""Returning users: ``conversations_per_user`` of the vectorised environment and the single
environment's ``reset(options={"same_user": True})``."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from simulators.env import SegmentDialogueEnv
from simulators.policies import RandomPolicy
from simulators.vector_env import SegmentDialogueVectorEnv


def _run(env: SegmentDialogueVectorEnv, seed: int, steps: int) -> list[tuple]:
    """(obs, info) at reset, then (obs, reward, ended, info) per step, random valid acts."""
    policy = RandomPolicy(seed=1)
    obs, info = env.reset(seed=seed)
    out: list[tuple] = [(obs, info)]
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(policy(obs, info["action_mask"]))
        out.append((obs, reward, terminated | truncated, info))
    return out


def test_one_conversation_per_user_is_the_default_and_a_new_user_every_time() -> None:
    default = _run(SegmentDialogueVectorEnv(num_envs=8), seed=3, steps=60)
    explicit = _run(SegmentDialogueVectorEnv(num_envs=8, conversations_per_user=1), seed=3, steps=60)
    for a, b in zip(default, explicit, strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[-1]["user_params"], b[-1]["user_params"])
    ended_any = False
    for prev, step in itertools.pairwise(default):
        ended = step[2]
        ended_any |= bool(ended.any())
        assert (step[3]["conversation_index"] == 0).all()
        assert not (step[3]["user_params"][ended] == prev[-1]["user_params"][ended]).all(1).any()
    assert ended_any


def test_a_user_returns_for_k_conversations_with_a_new_goal_then_a_new_user_comes() -> None:
    k = 3
    env = SegmentDialogueVectorEnv(num_envs=16, conversations_per_user=k)
    run = _run(env, seed=0, steps=200)
    assert (run[0][1]["conversation_index"] == 0).all()
    conversations = np.zeros(16, dtype=np.int64)
    for prev, step in itertools.pairwise(run):
        _, _, ended, info = step
        conversations += ended
        np.testing.assert_array_equal(info["conversation_index"], conversations % k)
        before, after = prev[-1], info
        returning = ended & (info["conversation_index"] > 0)
        np.testing.assert_array_equal(after["user_params"][returning], before["user_params"][returning])
        np.testing.assert_array_equal(after["segment"][returning], before["segment"][returning])
        fresh = ended & (info["conversation_index"] == 0)
        assert not (after["user_params"][fresh] == before["user_params"][fresh]).all(1).any()
    assert conversations.min() >= k + 1, "every row should have met a second user"


def test_returning_users_goals_differ_between_conversations() -> None:
    env = SegmentDialogueVectorEnv(num_envs=64, conversations_per_user=2)
    env.reset(seed=4)
    first = env.goal.copy()
    policy = RandomPolicy(seed=2)
    obs, info = env.reset(seed=4)
    seen = np.zeros(64, dtype=bool)
    second = np.zeros_like(first)
    for _ in range(40):
        obs, _, term, trunc, info = env.step(policy(obs, info["action_mask"]))
        now = (term | trunc) & ~seen & (info["conversation_index"] == 1)
        second[now] = env.goal[now]
        seen |= now
    assert seen.sum() > 50
    assert (second[seen] != first[seen]).any(1).mean() > 0.5


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_conversations_per_user(bad: object) -> None:
    with pytest.raises(ValueError, match="conversations_per_user"):
        SegmentDialogueVectorEnv(num_envs=2, conversations_per_user=bad)  # type: ignore[arg-type]


def test_single_env_same_user_keeps_the_user_and_counts_conversations() -> None:
    env = SegmentDialogueEnv(segments=["power", "core", "casual"])
    _, first = env.reset(seed=0)
    assert first["conversation_index"] == 0
    _, again = env.reset(options={"same_user": True})
    assert again["conversation_index"] == 1
    assert again["user_params"] == first["user_params"] and again["segment"] == first["segment"]
    _, other = env.reset()
    assert other["conversation_index"] == 0 and other["user_params"] != first["user_params"]


def test_single_env_same_user_needs_a_user_and_its_segment() -> None:
    env = SegmentDialogueEnv(segments=["power", "casual"])
    with pytest.raises(ValueError, match="earlier episode"):
        env.reset(seed=0, options={"same_user": True})
    _, info = env.reset(seed=0, options={"segment": "power"})
    with pytest.raises(ValueError, match="power user"):
        env.reset(options={"same_user": True, "segment": "casual"})
    _, info = env.reset(options={"same_user": True, "segment": "power"})
    assert info["conversation_index"] == 1
