"""RL^2 (``metarl_core.rl2``): the recurrent state, its resets, training, and checkpoints.

- The GRU state, the previous act and the previous reward count for nothing where a conversation
  starts (whatever came before), and they do change the state otherwise (the test is not vacuous).
- ``RecurrentState.reset`` forgets exactly the rows it is given: a reset row acts as a fresh one.
- Recomputing the states over a rollout in the update (``_sequence_inputs``) gives back the very
  log-probabilities the rollout was collected with, across dialogue starts inside the rollout and
  the state carried in from the previous one.
- A trainer runs a few updates, exports a checkpoint (with prototypes of the GRU state for the
  segment read-out) that loads as an RL^2 agent acting identically (greedy and sampled) and
  resumes; a short run learns to beat a random policy clearly.
- Carried across a returning user's conversations (``conversations_per_user > 1``): the state
  restarts only where a new user starts, not at every conversation, and the update still recomputes
  the collected log-probabilities.
- The config refuses other variants and a zero memory size.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from metarl_core.config import RL2Config
from metarl_core.evaluation import play
from metarl_core.inference import Agent, RecurrentState
from metarl_core.networks import ActorCritic, NetworkSpec
from metarl_core.ppo import Rollout
from metarl_core.rl2 import RL2Trainer
from simulators.policies import RandomPolicy
from simulators.rollout import run_dialogues

SPEC = NetworkSpec(obs_dim=6, n_actions=4, variant="rl2", hidden=16, memory_dim=8)


def small_rl2(make_config: Callable[..., Any], **overrides: Any) -> RL2Config:
    base = {k: v for k, v in make_config().model_dump().items() if k != "variant"}
    return RL2Config.from_dict(base | {"memory_dim": 16, **overrides})


def test_memory_ignores_the_past_where_a_conversation_starts() -> None:
    torch.manual_seed(0)
    model = ActorCritic(SPEC)
    obs = torch.rand(5, 6)
    past = torch.randn(5, 8), torch.eye(4)[torch.tensor([0, 1, 2, 3, 0])], torch.tensor([19.0, -1, -1, 0, 5])
    fresh = torch.zeros(5, 8), torch.zeros(5, 4), torch.zeros(5)
    starts = torch.ones(5, dtype=torch.bool)
    with torch.no_grad():
        after_past = model.memory_step(past[0], starts, obs, past[1], past[2])
        after_fresh = model.memory_step(fresh[0], starts, obs, fresh[1], fresh[2])
        carried = model.memory_step(past[0], ~starts, obs, past[1], past[2])
        reward_only = model.memory_step(fresh[0], ~starts, obs, fresh[1], past[2])
    torch.testing.assert_close(after_past, after_fresh)
    assert (carried - after_fresh).abs().amax(-1).min() > 1e-4, "the past never mattered: vacuous"
    assert (reward_only - after_fresh)[past[2] != 0].abs().amax(-1).min() > 1e-5, "the reward is not read"


def test_state_reset_forgets_exactly_the_rows_given() -> None:
    torch.manual_seed(1)
    agent = Agent(ActorCritic(SPEC))
    obs = np.random.default_rng(0).random((4, 6), dtype=np.float32)
    mask = np.ones((4, 4), dtype=np.int8)
    state = agent.initial_state(4)
    assert isinstance(state, RecurrentState)
    for _ in range(3):
        agent.step(obs, mask, state)
        state.observe_rewards(np.array([-1.0, 19.0, -1.0, 3.0]))
    assert (state.turns == 3).all() and state.memory.abs().sum() > 0
    before = state.memory.clone()
    state.reset(torch.tensor([True, False, True, False]))
    assert (state.memory[[0, 2]] == 0).all() and (state.prev_action[[0, 2]] == 0).all()
    assert (state.prev_reward[[0, 2]] == 0).all() and state.turns.tolist() == [0, 3, 0, 3]
    torch.testing.assert_close(state.memory[[1, 3]], before[[1, 3]])
    # A reset row now takes the same step as a brand-new conversation.
    new = agent.initial_state(4)
    agent.step(obs, mask, state)
    agent.step(obs, mask, new)
    assert isinstance(new, RecurrentState)
    torch.testing.assert_close(state.memory[[0, 2]], new.memory[[0, 2]])
    assert not torch.allclose(state.memory[[1, 3]], new.memory[[1, 3]])


def test_update_recomputes_the_collected_log_probabilities(make_config: Callable[..., Any], tmp_path: Path) -> None:
    trainer = RL2Trainer(small_rl2(make_config, seed=2), tmp_path)
    trainer.collect()  # the second rollout starts mid-dialogue, from a carried state
    r = trainer.collect()
    assert r.starts[1:].any() and not r.starts[0].all(), "need starts inside and a carried state at step 0"
    assert r.carry0[0].abs().sum() > 0
    assert_recomputed(trainer, r)


def assert_recomputed(trainer: RL2Trainer, r: Rollout) -> None:
    """The update's recomputed states give back the rollout's log-probabilities and values."""
    cols = torch.arange(trainer.cfg.num_envs)
    with torch.no_grad():
        x, _, _ = trainer._sequence_inputs(r, cols)
        logits, value = trainer.model(x, r.masks)
        logp = torch.distributions.Categorical(logits=logits).log_prob(r.actions)
    torch.testing.assert_close(logp, r.logprobs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(value, r.values, atol=1e-5, rtol=1e-5)


def test_trains_saves_loads_and_resumes(
    make_config: Callable[..., Any], same_play: Callable[..., None], tmp_path: Path
) -> None:
    cfg = small_rl2(make_config, total_steps=3 * 1024, checkpoint_every=1)
    trainer = RL2Trainer(cfg, tmp_path / "run")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train(stop_after=2)
    assert (trainer.update, trainer.global_step) == (2, 2 * 1024)
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    card = trainer.export(tmp_path / "ckpt")
    assert card.network.variant == "rl2" and card.network.memory_dim == 16
    # The segment read-out: prototypes of the GRU state, per turn count and training segment.
    assert np.asarray(card.prototypes).shape == (8, 3, 16) and len(card.prototype_temperature) == 8
    loaded = Agent.load(tmp_path / "ckpt")
    assert loaded.recurrent and not loaded.contextual and loaded.readout_dim == 16
    rec = play(loaded, cfg.env_id, cfg.env_kwargs, 60, seed=4, batch=30)
    assert rec.confidence.min() > 0 and rec.predicted.max() < 3
    assert len(rec.summary()["id_accuracy"]) == rec.predicted.shape[1]
    same_play(Agent(trainer.model, card), loaded, cfg)
    with pytest.raises(ValueError, match="recurrent state"):
        loaded.act_one(np.zeros(card.network.obs_dim, dtype=np.float32), np.ones(12, dtype=np.int8), None)

    resumed = RL2Trainer(cfg, tmp_path / "run")
    assert resumed.try_resume() and resumed.global_step == 2 * 1024
    resumed.train()
    assert resumed.update == 3 and resumed.history[-1]["step"] == 3 * 1024


def test_a_short_run_learns(make_config: Callable[..., Any], tmp_path: Path) -> None:
    cfg = small_rl2(make_config, total_steps=60_000, num_envs=128, learning_rate=3e-3, checkpoint_every=1000)
    trainer = RL2Trainer(cfg, tmp_path)
    trainer.train()
    trained = play(trainer.agent(), cfg.env_id, cfg.env_kwargs, 300, seed=123)
    rand = run_dialogues(RandomPolicy(seed=1), 300, seed=123, **cfg.env_kwargs).summary()
    # Observed: trained ~8-10, random ~-3.
    assert float(trained.returns.mean()) > rand["mean_return"] + 7.0, (trained.summary(), rand)


def test_carried_state_restarts_only_for_a_new_user(make_config: Callable[..., Any], tmp_path: Path) -> None:
    trainer = RL2Trainer(small_rl2(make_config, seed=3, conversations_per_user=3), tmp_path)
    assert trainer.cfg.carried
    index = []
    r0 = trainer.collect()
    index.append(np.asarray(trainer.info["conversation_index"]))
    r = trainer.collect()
    ended = torch.cat([r0.dones[-1:], r.dones[:-1]]).bool()  # a conversation ended before step t
    assert (r.starts <= ended).all(), "the memory restarted where no conversation ended"
    assert (ended & ~r.starts).any(), "no conversation boundary carried the state: vacuous"
    assert r.starts.any(), "no new user in the rollout"
    assert_recomputed(trainer, r)  # across the carried boundaries too
    assert set(np.concatenate(index).tolist()) <= {0, 1, 2}


def test_per_conversation_state_restarts_at_every_conversation(make_config: Callable[..., Any], tmp_path: Path) -> None:
    trainer = RL2Trainer(small_rl2(make_config, seed=3), tmp_path)
    r0 = trainer.collect()
    r = trainer.collect()
    ended = torch.cat([r0.dones[-1:], r.dones[:-1]]).bool()
    assert torch.equal(r.starts, ended)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"conversations_per_user": 0}, "conversations_per_user = 0: Input should be greater than 0"),
        ({"variant": "contextual"}, "variant = \"contextual\": Input should be 'rl2'"),
        ({"memory_dim": 0}, "memory_dim = 0: Input should be greater than 0"),
    ],
)
def test_config_errors(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RL2Config.from_dict(overrides)
