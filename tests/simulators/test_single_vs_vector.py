"""The single and the vectorised environment implement the same MDP: statistical agreement.

For each fixed reference policy (power, core, casual) on each training segment, 1,500 dialogues
are played on the single environment (the policy called on one row at a time) and 1,500 on the
vectorised one (``run_dialogues``). Mean return, success rate, mean length and hang-up rate must
agree within four combined standard errors. Seeds are fixed, so the test is deterministic; the
tolerance is what keeps it meaningful when the implementations change.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dialogue.acts import UserAct
from simulators.env import SegmentDialogueEnv
from simulators.policies import Policy, make_policy
from simulators.profiles import TRAINING_SEGMENTS
from simulators.rollout import DialogueStats, run_dialogues

N_DIALOGUES = 1500
Z = 4.0


def run_single(policy: Policy, segment: str, n: int, seed: int) -> DialogueStats:
    """``n`` dialogues on the single environment, one seeded reset each."""
    env = SegmentDialogueEnv(segments=segment)
    returns, success, turns, hangup = np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64), []
    for i in range(n):
        obs, info = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            act = policy(obs[None], info["action_mask"][None], np.array([info["segment"]]))[0]
            obs, reward, terminated, truncated, info = env.step(act)
            total += reward
            done = terminated or truncated
        returns[i], success[i], turns[i] = total, info["success"], env.state.turn
        hangup.append(info["user_act"] == UserAct.HANGUP.name)
    return DialogueStats(returns, success, turns, np.array(hangup), np.full(n, segment))


def assert_agree(name: str, a: np.ndarray, b: np.ndarray) -> None:
    a, b = a.astype(float), b.astype(float)
    diff = a.mean() - b.mean()
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    assert abs(diff) <= Z * se + 1e-12, (
        f"{name}: single {a.mean():.3f} vs vectorised {b.mean():.3f} (diff {diff:+.3f}, {Z} SE = {Z * se:.3f})"
    )


@pytest.mark.parametrize("segment", TRAINING_SEGMENTS)
@pytest.mark.parametrize("policy_name", ["power", "core", "casual"])
def test_single_and_vectorised_agree(policy_name: str, segment: str) -> None:
    env = SegmentDialogueEnv()
    policy = make_policy(policy_name, env.state.layout)
    single = run_single(policy, segment, N_DIALOGUES, seed=100_000)
    vector = run_dialogues(policy, N_DIALOGUES, segments=segment, seed=12, batch=N_DIALOGUES)
    assert single.n == vector.n == N_DIALOGUES
    assert (vector.segments == segment).all()
    assert_agree("mean return", single.returns, vector.returns)
    assert_agree("success rate", single.success, vector.success)
    assert_agree("mean turns", single.turns, vector.turns)
    assert_agree("hang-up rate", single.hangup, vector.hangup)
