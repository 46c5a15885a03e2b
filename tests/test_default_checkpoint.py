"""The shipped default checkpoint (``models/default``) loads against today's code and plays well.

If the observation layout or the network code changes, this fails until the checkpoint is retrained
with ``segdial train --config configs/default.toml``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dialogue.tracker import ObservationLayout
from metarl_core.evaluation import make_vec
from metarl_core.inference import Agent, BeliefState
from segdial.agents import CheckpointPolicy
from simulators.policies import make_policy
from simulators.profiles import TRAINING_SEGMENTS
from simulators.rollout import run_dialogues

DEFAULT = Path(__file__).resolve().parents[1] / "models" / "default"
LAYOUT = ObservationLayout(3)


def test_the_default_checkpoint_and_its_comparators_load() -> None:
    agent = Agent.load(DEFAULT, obs_dim=LAYOUT.size)
    assert agent.contextual
    assert agent.segments == list(TRAINING_SEGMENTS)
    assert agent.prototypes is not None
    for name in ("agnostic", "oracle"):
        comparator = Agent.load(DEFAULT / "comparators" / name, obs_dim=LAYOUT.size)
        assert comparator.spec.variant == name


@pytest.mark.parametrize("segment", TRAINING_SEGMENTS)
def test_the_default_policy_beats_the_compromise_on_every_segment(segment: str) -> None:
    policy = CheckpointPolicy(DEFAULT, LAYOUT)
    trained = run_dialogues(policy, 600, segments=segment, seed=3).summary()
    compromise = run_dialogues(make_policy("compromise", LAYOUT), 600, segments=segment, seed=3).summary()
    # The compromise is nearly the power users' own policy, so there the trained policy need only
    # match it within noise; on casual users the compromise fails often and the gap is large.
    margin = {"power": -0.5, "core": 0.0, "casual": 3.0}[segment]
    assert np.isfinite(trained["mean_return"])
    assert trained["mean_return"] - compromise["mean_return"] > margin, (trained, compromise)


def test_act_one_plays_as_the_batched_torch_path() -> None:
    """The service's ``act_one`` (numpy) and ``Agent.step`` (torch, batched) pick the same acts and
    keep the same beliefs, turn by turn, on 64 conversations of the trained default policy."""
    agent = Agent.load(DEFAULT, obs_dim=LAYOUT.size)
    assert agent.card is not None
    n = 64
    envs = make_vec(agent.card.env_id, n, **agent.card.env_kwargs)
    obs, info = envs.reset(seed=11)
    belief = agent.initial_belief(n)
    states: list[BeliefState | None] = [None] * n
    ended = 0
    for _ in range(30):
        masks = info["action_mask"]
        acts = agent.step(obs, masks, belief)
        for i in range(n):
            act, state = agent.act_one(obs[i], masks[i], states[i])
            assert act == acts[i]
            np.testing.assert_allclose(state.eta, belief.eta[i].numpy(), rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(state.precision, belief.precision[i].numpy(), rtol=1e-5)
            states[i] = state
        obs, _, terminated, truncated, info = envs.step(acts)
        done = np.asarray(terminated | truncated)
        belief.reset(torch.as_tensor(done))
        states = [None if d else s for s, d in zip(states, done, strict=True)]
        ended += int(done.sum())
    assert ended > n, "too few conversations ended for the comparison to cover new ones"
