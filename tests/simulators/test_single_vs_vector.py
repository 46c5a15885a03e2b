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
from simulators.vector_env import SegmentDialogueVectorEnv

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


@pytest.mark.parametrize("segment", TRAINING_SEGMENTS)
def test_single_and_vectorised_registers_agree(segment: str) -> None:
    """The register the system observes: own style at the opening, mostly plain afterwards."""
    env = SegmentDialogueEnv(segments=segment)
    reg = env.state.layout.register
    policy = make_policy("core", env.state.layout)
    single: dict[bool, list[float]] = {True: [], False: []}
    for i in range(400):
        obs, info = env.reset(seed=7 + i)
        single[True].append(float(obs[reg]))
        obs, *_ = env.step(policy(obs[None], info["action_mask"][None])[0])
        single[False].append(float(obs[reg]))
    vec = SegmentDialogueVectorEnv(num_envs=400, segments=segment)
    obs, info = vec.reset(seed=3)
    opening = obs[:, reg].copy()
    obs, _, terminated, truncated, _ = vec.step(policy(obs, info["action_mask"]))
    later = obs[~(terminated | truncated), reg]
    for name, a, b in (("opening", single[True], opening), ("second turn", single[False], later)):
        for style in (0.0, 0.5, 1.0):
            assert_agree(f"{segment} {name} share of register {style}", np.array(a) == style, np.asarray(b) == style)
    # Entrainment: the second turn is plain more often than the opening, for terse and chatty users.
    if segment != "core":
        assert np.mean(np.array(single[False]) == 0.5) > np.mean(np.array(single[True]) == 0.5) + 0.5
