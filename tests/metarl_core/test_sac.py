"""Discrete SAC (``metarl_core.sac``): the replay buffer, the beliefs it recomputes, the soft
Bellman target, training, checkpoints and resume.

- The buffer holds whole episodes as a ring: the oldest are overwritten, lengths kept.
- An episode stored in the buffer (one conversation, or a returning user's conversations in order),
  run through the encoder in one go (cumulative natural parameters), gives the posteriors of
  ``belief_step`` turn by turn (the update acting uses, restarted only for a new user), and the
  stored acts were valid under the masks stored with them. A returning user's row holds exactly
  its K conversations, all of one segment.
- The critics' targets: a conversation's last turn is its reward alone (nothing after it, even when
  the same user's next conversation follows in the row), every other turn adds the discounted soft
  value of the next (with target critics of 0: gamma * alpha * the next policy's entropy; a
  constant in the target critics moves them by gamma times the smaller).
- A trainer runs a few iterations, exports a checkpoint that loads as an ``Agent`` acting like the
  trained policy, and resumes with its buffer and critics; a short run beats a random policy
  clearly (within the fast suite).
- The config refuses what SAC does not do (a carried memory, an annealed step size).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from metarl_core.belief import belief_step, posterior
from metarl_core.config import SACConfig
from metarl_core.evaluation import play
from metarl_core.inference import Agent
from metarl_core.sac import ReplayBuffer, SACTrainer
from simulators.env import SUCCESS_REWARD, TURN_PENALTY
from simulators.policies import RandomPolicy
from simulators.rollout import run_dialogues


def small_sac(make_config: Callable[..., Any], **overrides: Any) -> SACConfig:
    shared = ("env_id", "env_kwargs", "total_steps", "hidden", "latent_dim", "eval_episodes", "threads")
    base = {k: v for k, v in make_config().model_dump().items() if k in shared}
    sac = {"num_envs": 16, "rollout_steps": 8, "learning_starts": 256, "batch_conversations": 16, "gradient_steps": 2}
    return SACConfig.from_dict(base | sac | {"eval_every": 1000, "checkpoint_every": 1, **overrides})


def test_buffer_is_a_ring_of_whole_conversations() -> None:
    buf = ReplayBuffer(capacity=3, turns=4, obs_dim=2, n_actions=3, task_dim=1)

    def conversations(first: int, n: int) -> dict[str, torch.Tensor]:
        ids = torch.arange(first, first + n, dtype=torch.float32)
        return {
            "obs": ids.view(-1, 1, 1).expand(n, 4, 2),
            "masks": torch.ones(n, 4, 3, dtype=torch.bool),
            "tasks": torch.zeros(n, 4, 1),
            "actions": torch.zeros(n, 4, dtype=torch.long),
            "rewards": ids.view(-1, 1).expand(n, 4),
            "labels": torch.zeros(n, 4, dtype=torch.long),
            "dones": torch.zeros(n, 4, dtype=torch.bool),
        }

    buf.add(conversations(0, 2), torch.tensor([1, 2]))
    assert buf.size == 2
    buf.add(conversations(2, 2), torch.tensor([3, 4]))  # the third fills the ring, the fourth overwrites 0
    assert buf.size == 3
    held = sorted(buf.data["obs"][:, 0, 0].tolist())
    assert held == [1.0, 2.0, 3.0]
    assert dict(zip(buf.data["rewards"][:, 0].tolist(), buf.lengths.tolist(), strict=True)) == {1: 2, 2: 3, 3: 4}
    copy = ReplayBuffer(capacity=3, turns=4, obs_dim=2, n_actions=3, task_dim=1)
    copy.load_state_dict(buf.state_dict())
    assert torch.equal(copy.data["obs"], buf.data["obs"]) and copy.next == buf.next and copy.size == 3


@pytest.mark.parametrize("per_user", [1, 3])
def test_stored_episodes_give_the_streamed_beliefs(
    make_config: Callable[..., Any], tmp_path: Path, per_user: int
) -> None:
    trainer = SACTrainer(small_sac(make_config, learning_starts=0, conversations_per_user=per_user), tmp_path)
    assert trainer.buffer.turns == per_user * trainer.cfg.max_conversation_turns
    while trainer.buffer.size < 5:  # episodes end and go into the buffer (no gradient step needed)
        trainer.collect_turns()
    buf = trainer.buffer
    n = buf.size
    batch = {k: v[:n] for k, v in buf.data.items()}
    lengths = buf.lengths[:n]
    valid = torch.arange(buf.turns) < lengths[:, None]
    # A row is one user: its K conversations, each ended by a done, the last at the row's end.
    assert (batch["dones"].sum(1) == per_user).all()
    assert batch["dones"][torch.arange(n), lengths - 1].all()
    labels = batch["labels"].masked_fill(~valid, -1)
    assert all(set(row[row >= 0].tolist()) == {int(row[0])} for row in labels), "a row mixes segments"
    with torch.no_grad():
        packed, kl, _ = trainer._conversation_inputs(batch, valid)
        assert packed.shape[0] == int(valid.sum())
        x = torch.zeros(*valid.shape, packed.shape[-1]).masked_scatter(valid.unsqueeze(-1), packed)
        encoder = trainer.model.encoder
        assert encoder is not None
        eta = torch.zeros(n, trainer.cfg.latent_dim)
        precision = torch.ones_like(eta)
        for t in range(buf.turns):
            eta, precision = belief_step(eta, precision, torch.full((n,), t == 0), *encoder(batch["obs"][:, t]))
            mean, var = posterior(eta, precision)
            expected = trainer.model.inputs(batch["obs"][:, t], mean, var)
            live = lengths > t
            torch.testing.assert_close(x[live, t], expected[live])
    assert float(kl) > 0
    taken = batch["masks"].gather(-1, batch["actions"].unsqueeze(-1)).squeeze(-1)
    assert bool(taken[valid].all()), "an act was stored that its mask did not allow"
    assert (lengths >= 1).all() and (lengths <= buf.turns).all()


@pytest.mark.parametrize("per_user", [1, 3])
def test_soft_targets(make_config: Callable[..., Any], tmp_path: Path, per_user: int) -> None:
    trainer = SACTrainer(small_sac(make_config, learning_starts=0, conversations_per_user=per_user), tmp_path)
    while trainer.buffer.size < 4:
        trainer.collect_turns()
    n = trainer.buffer.size
    batch = {k: v[:n] for k, v in trainer.buffer.data.items()}
    lengths = trainer.buffer.lengths[:n]
    turn = torch.arange(trainer.buffer.turns)
    live, last = turn < lengths[:, None], batch["dones"]
    alpha = torch.tensor(0.3)
    with torch.no_grad():
        packed, _, _ = trainer._conversation_inputs(batch, live)
        x = torch.zeros(*live.shape, packed.shape[-1]).masked_scatter(live.unsqueeze(-1), packed)
        x_next = torch.cat([x[:, 1:], x[:, -1:]], 1)[live]
        m_next = torch.cat([batch["masks"][:, 1:], batch["masks"][:, -1:]], 1)[live]
        rewards, ends = batch["rewards"][live], last[live]
        p, logp = trainer._policy(x_next, m_next)
        next_entropy = -(p * logp).sum(-1)
        for param in trainer.q_target.parameters():  # target critics of 0 everywhere
            param.zero_()
        target = trainer.soft_targets(x_next, m_next, rewards, ends, alpha)
        # ... then the next turn's soft value is alpha times the entropy of its policy.
        expected = torch.where(ends, rewards, rewards + trainer.cfg.gamma * alpha * next_entropy)
        torch.testing.assert_close(target, expected)
        assert ends.any() and (~ends).any()
        # With returning users some conversation ends are followed by the same user's next turn.
        next_live = torch.cat([live[:, 1:], torch.zeros_like(live[:, :1])], 1)[live]
        assert int((ends & next_live).sum()) == (per_user - 1) * n
        # gradient_step's shift of the packed turns gives the next turn wherever one is needed.
        torch.testing.assert_close(torch.cat([packed[1:], packed[-1:]])[~ends], x_next[~ends])
        assert (next_entropy[~ends] > 0).any(), "every next policy deterministic: vacuous"
        biases = dict(trainer.q_target.named_parameters())  # the target critics enter as the smaller twin
        biases["q1.4.bias"].fill_(2.0)
        biases["q2.4.bias"].fill_(5.0)
        shifted = trainer.soft_targets(x_next, m_next, rewards, ends, alpha)
        torch.testing.assert_close(shifted, target + torch.where(ends, 0.0, trainer.cfg.gamma * 2.0))


def test_trains_saves_loads_and_resumes(
    make_config: Callable[..., Any], same_play: Callable[..., None], tmp_path: Path
) -> None:
    cfg = small_sac(make_config, total_steps=6 * 128)
    trainer = SACTrainer(cfg, tmp_path / "run")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train(stop_after=4)
    assert (trainer.update, trainer.global_step) == (4, 4 * 128)
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    card = trainer.export(tmp_path / "ckpt", prototype_episodes=300, max_turns_id=4)
    assert card.network.variant == "contextual" and np.asarray(card.prototypes).shape[:2] == (4, 3)
    same_play(Agent(trainer.model, card), Agent.load(tmp_path / "ckpt"), cfg)

    size, q = trainer.buffer.size, {k: v.clone() for k, v in trainer.q.state_dict().items()}
    resumed = SACTrainer(cfg, tmp_path / "run")
    assert resumed.try_resume() and resumed.global_step == 4 * 128
    assert resumed.buffer.size == size and size > 0
    assert all(torch.equal(q[k], v) for k, v in resumed.q.state_dict().items())
    assert resumed.log_alpha.item() == trainer.log_alpha.item()
    resumed.train()
    assert resumed.update == 6 and resumed.history[-1]["step"] == 6 * 128


@pytest.mark.parametrize("variant", ["agnostic", "oracle"])
def test_other_variants_train(make_config: Callable[..., Any], tmp_path: Path, variant: str) -> None:
    trainer = SACTrainer(small_sac(make_config, variant=variant, total_steps=3 * 128), tmp_path)
    trainer.train()
    assert trainer.model.encoder is None and np.isfinite(trainer.history[-1]["losses/q"])


def test_a_short_run_learns(make_config: Callable[..., Any], tmp_path: Path) -> None:
    cfg = small_sac(
        make_config, total_steps=12_288, learning_starts=1024, batch_conversations=32, gradient_steps=8, hidden=64
    )
    trainer = SACTrainer(cfg, tmp_path)
    trainer.train()
    trained = play(trainer.agent(), cfg.env_id, cfg.env_kwargs, 300, seed=123)
    rand = run_dialogues(RandomPolicy(seed=1), 300, seed=123, **cfg.env_kwargs).summary()
    # Observed: trained ~6-9 after 12k turns, random ~-3.
    assert float(trained.returns.mean()) > rand["mean_return"] + 6.0, (trained.summary(), rand)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"conversations_per_user": 3, "buffer_conversations": 2}, "must hold at least one user's"),
        ({"anneal_lr": True}, "anneal_lr = true: Input should be False"),
        ({"tau": 0.0}, "tau = 0.0: Input should be greater than 0"),
        ({"target_entropy_ratio": 1.0}, "target_entropy_ratio = 1.0: Input should be less than 1"),
        ({"gradient_steps": 0}, "gradient_steps = 0: Input should be greater than 0"),
        ({"variant": "rl2"}, "variant = \"rl2\": Input should be 'contextual', 'agnostic' or 'oracle'"),
    ],
)
def test_config_errors(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SACConfig.from_dict(overrides)


def test_success_bonus_shapes_the_stored_rewards(make_config: Callable[..., Any], tmp_path: Path) -> None:
    """What goes into the buffer is the training reward: +7 on the turns that end in success."""
    buffers = []
    for bonus in (0.0, 7.0):
        trainer = SACTrainer(small_sac(make_config, learning_starts=10**6, success_bonus=bonus), tmp_path / str(bonus))
        while trainer.buffer.size < 8:
            trainer.collect_turns()
        buffers.append(trainer.buffer)
    plain, shaped = buffers
    n = min(plain.size, shaped.size)
    assert torch.equal(plain.data["actions"][:n], shaped.data["actions"][:n])
    success = plain.data["rewards"][:n] == TURN_PENALTY + SUCCESS_REWARD
    assert success.any()
    torch.testing.assert_close(shaped.data["rewards"][:n] - plain.data["rewards"][:n], 7.0 * success.float())
