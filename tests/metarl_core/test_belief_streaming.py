"""Streaming belief updates agree with the batch posterior, in training and in inference.

- ``streaming_posteriors`` (the training path) equals ``batch_posterior`` of every prefix, resets
  at dialogue starts, and carries its natural parameters correctly from one rollout to the next.
- ``BeliefState.update`` turn by turn ends where ``streaming_posteriors`` does.
- ``Agent.step`` on a batch computes the same beliefs as ``streaming_posteriors`` over the
  encoder's factors, and ``Agent.act_one`` turn by turn (the service) gives the same acts and
  beliefs as ``Agent.step`` on the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from metarl_core.belief import BeliefState, batch_posterior, streaming_posteriors
from metarl_core.inference import Agent
from metarl_core.networks import ActorCritic, NetworkSpec


def random_sequences(t: int, b: int, z: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Factor means and log-variances ``(t, b, z)`` in float64."""
    g = torch.Generator().manual_seed(seed)
    mean = 2.0 * torch.randn(t, b, z, generator=g, dtype=torch.float64)
    logvar = 4.0 * torch.rand(t, b, z, generator=g, dtype=torch.float64) - 2.0
    return mean, logvar


def prior_carry(b: int, z: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(b, z, dtype=torch.float64), torch.ones(b, z, dtype=torch.float64)


def test_streaming_without_starts_equals_batch_posterior_of_every_prefix() -> None:
    mean, logvar = random_sequences(10, 3, 2, seed=0)
    starts = torch.zeros(10, 3, dtype=torch.bool)
    m, v, eta, prec = streaming_posteriors(mean, logvar, starts, *prior_carry(3, 2))
    assert m.shape == v.shape == eta.shape == prec.shape == (10, 3, 2)
    for t in range(10):
        bm, bv = batch_posterior(mean[: t + 1], logvar[: t + 1])
        torch.testing.assert_close(m[t], bm, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(v[t], bv, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m, eta / prec)
    torch.testing.assert_close(v, 1.0 / prec)


def test_streaming_resets_at_starts_in_the_middle() -> None:
    t_len, b = 12, 3
    mean, logvar = random_sequences(t_len, b, 2, seed=1)
    starts = torch.zeros(t_len, b, dtype=torch.bool)
    starts[0, :] = True
    starts[4, 0] = True  # column 0: dialogues [0, 4), [4, 9), [9, 12)
    starts[9, 0] = True
    starts[7, 2] = True  # column 2: [0, 7), [7, 12); column 1 never restarts
    # Garbage carried in: the start at step 0 must discard it.
    eta0 = torch.full((b, 2), 123.0, dtype=torch.float64)
    prec0 = torch.full((b, 2), 0.01, dtype=torch.float64)
    m, v, _, _ = streaming_posteriors(mean, logvar, starts, eta0, prec0)
    for col in range(b):
        begins = [int(s) for s in torch.nonzero(starts[:, col]).flatten()]
        for t in range(t_len):
            first = max(s for s in begins if s <= t)
            bm, bv = batch_posterior(mean[first : t + 1, col], logvar[first : t + 1, col])
            torch.testing.assert_close(m[t, col], bm, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(v[t, col], bv, rtol=1e-12, atol=1e-12)


def test_streaming_carries_the_belief_across_rollouts() -> None:
    """Two calls with the carried (eta, precision) equal one call over the whole sequence."""
    mean, logvar = random_sequences(10, 4, 3, seed=2)
    starts = torch.zeros(10, 4, dtype=torch.bool)
    starts[0] = True
    starts[6, 1] = True
    m_all, v_all, _, _ = streaming_posteriors(mean, logvar, starts, *prior_carry(4, 3))
    m1, v1, eta1, prec1 = streaming_posteriors(mean[:5], logvar[:5], starts[:5], *prior_carry(4, 3))
    m2, v2, _, _ = streaming_posteriors(mean[5:], logvar[5:], starts[5:], eta1[-1], prec1[-1])
    torch.testing.assert_close(torch.cat([m1, m2]), m_all, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.cat([v1, v2]), v_all, rtol=1e-12, atol=1e-12)


def test_belief_state_turn_by_turn_equals_the_final_streaming_posterior() -> None:
    mean, logvar = random_sequences(15, 1, 3, seed=3)
    starts = torch.zeros(15, 1, dtype=torch.bool)
    m, v, eta, prec = streaming_posteriors(mean, logvar, starts, *prior_carry(1, 3))
    state = BeliefState.prior(3)
    for t in range(15):
        state = state.update(mean[t, 0].numpy(), logvar[t, 0].numpy())
        np.testing.assert_allclose(state.mean, m[t, 0].numpy(), rtol=1e-12, atol=1e-12)
    assert state.turns == 15
    np.testing.assert_allclose(state.eta, eta[-1, 0].numpy(), rtol=1e-12)
    np.testing.assert_allclose(state.precision, prec[-1, 0].numpy(), rtol=1e-12)
    np.testing.assert_allclose(state.variance, v[-1, 0].numpy(), rtol=1e-12)


# -- the agent -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def untrained_agent(dialogues: Any) -> Agent:
    """A contextual agent with random (seeded) weights: enough to compare code paths."""
    torch.manual_seed(11)
    obs_dim, n_actions = dialogues.obs.shape[-1], dialogues.masks.shape[-1]
    model = ActorCritic(NetworkSpec(obs_dim=obs_dim, n_actions=n_actions, latent_dim=3, hidden=32, n_segments=3))
    # Spread the factors out so that the belief moves visibly from turn to turn.
    with torch.no_grad():
        assert model.encoder is not None
        model.encoder.net[-1].weight.mul_(20.0)
    return Agent(model)


def test_agent_step_beliefs_equal_streaming_posteriors(
    untrained_agent: Agent, dialogues: Any, replay_agent: Callable[..., Any]
) -> None:
    """The belief the deployed agent computes is the one the trainer trains on."""
    rec = replay_agent(untrained_agent, dialogues)
    encoder = untrained_agent.model.encoder
    assert encoder is not None
    with torch.no_grad():
        f_mean, f_logvar = encoder(torch.as_tensor(dialogues.obs))
        b, z = dialogues.obs.shape[1], untrained_agent.latent_dim
        m, _, eta, prec = streaming_posteriors(
            f_mean, f_logvar, torch.as_tensor(dialogues.starts), torch.zeros(b, z), torch.ones(b, z)
        )
    np.testing.assert_allclose(rec.eta, eta.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rec.precision, prec.numpy(), rtol=1e-5)
    assert np.ptp(m.numpy(), axis=0).max() > 0.1, "the belief hardly moves: the comparison is vacuous"


def test_act_one_turn_by_turn_equals_step_on_a_batch(
    untrained_agent: Agent, dialogues: Any, replay_agent: Callable[..., Any]
) -> None:
    rec = replay_agent(untrained_agent, dialogues)
    t_len, b = dialogues.obs.shape[:2]
    restarts = 0
    for col in range(b):
        state: BeliefState | None = None
        for t in range(t_len):
            if dialogues.starts[t, col]:
                state = None
                restarts += 1
            act, state = untrained_agent.act_one(dialogues.obs[t, col], dialogues.masks[t, col], state)
            assert act == rec.acts[t, col], (t, col)
            assert dialogues.masks[t, col, act] == 1, "picked an invalid act"
            assert state.turns == (t - max(s for s in range(t + 1) if dialogues.starts[s, col]) + 1), (
                "turn count not reset at the dialogue start"
            )
            np.testing.assert_allclose(state.eta, rec.eta[t, col], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(state.precision, rec.precision[t, col], rtol=1e-5)
    assert restarts > b, "no dialogue restarted inside the window"
    assert len(np.unique(rec.acts)) > 1


def test_act_one_starts_from_the_prior_and_does_not_mutate_the_state(untrained_agent: Agent, dialogues: Any) -> None:
    obs, mask = dialogues.obs[0, 0], dialogues.masks[0, 0]
    act_none, from_none = untrained_agent.act_one(obs, mask, None)
    prior = BeliefState.prior(untrained_agent.latent_dim)
    act_prior, from_prior = untrained_agent.act_one(obs, mask, prior)
    assert (act_none, from_none) == (act_prior, from_prior)
    assert prior == BeliefState.prior(untrained_agent.latent_dim)
    assert from_prior.turns == 1 and from_prior != prior
