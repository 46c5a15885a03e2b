"""First-order MAML (``metarl_core.maml``): the inner loop on a toy task, meta-training, checkpoints.

- On a two-armed bandit (one-turn conversations, reward 1 for the good arm), the inner loop
  (``adapt``) on K conversations moves the policy toward the arm that paid, whichever arm it is,
  raises the expected return, and moves further with more steps; the batched inner loop of
  meta-training gives every instance what ``adapt`` gives it alone.
- ``play_conversations`` keeps exactly one whole conversation per column.
- A trainer runs a few meta-updates on the dialogue simulator, counts as environment steps exactly
  the turns of the conversations it used, exports a checkpoint that loads and acts identically,
  and resumes; the config refuses a meta-batch that does not split into tasks and minibatches.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from metarl_core.config import MAMLConfig
from metarl_core.evaluation import play
from metarl_core.inference import Agent
from metarl_core.maml import (
    Episodes,
    InnerBatch,
    MAMLTrainer,
    actor_parameters,
    adapt,
    inner_steps,
    play_conversations,
)
from metarl_core.networks import ActorCritic, NetworkSpec


class Bandit(gym.vector.VectorEnv):
    """``num_envs`` two-armed bandits: every conversation is one turn; arm ``good`` pays 1."""

    def __init__(self, num_envs: int, good: int) -> None:
        self.num_envs = num_envs
        self.good = good
        self.single_observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.single_action_space = gym.spaces.Discrete(2)

    def _info(self) -> dict[str, Any]:
        return {"action_mask": np.ones((self.num_envs, 2), dtype=np.int8), "success": np.zeros(self.num_envs, bool)}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        return np.ones((self.num_envs, 1), np.float32), self._info()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        reward = (np.asarray(actions) == self.good).astype(np.float64)
        info = self._info() | {"success": reward > 0}
        done = np.ones(self.num_envs, dtype=bool)
        return np.ones((self.num_envs, 1), np.float32), reward, done, np.zeros(self.num_envs, bool), info


def bandit_policy(seed: int = 0) -> ActorCritic:
    torch.manual_seed(seed)
    return ActorCritic(NetworkSpec(obs_dim=1, n_actions=2, variant="agnostic", hidden=8))


def p_arm(model: ActorCritic, arm: int) -> float:
    with torch.no_grad():
        logits, _ = model(torch.ones(1, 1), torch.ones(1, 2))
    return float(torch.softmax(logits, -1)[0, arm])


def bandit_episodes(model: ActorCritic, good: int, k: int, seed: int) -> Episodes:
    torch.manual_seed(seed)
    return play_conversations(lambda o, m: model(o, m), Bandit(k, good), seed)


@pytest.mark.parametrize("good", [0, 1])
@pytest.mark.parametrize("k", [5, 20])
def test_inner_loop_moves_toward_the_arm_that_pays(good: int, k: int) -> None:
    model = bandit_policy()
    before = p_arm(model, good)
    assert 0.3 < before < 0.7, "start near uniform"
    ep = bandit_episodes(model, good, k, seed=good + 10 * k)
    assert 0 < float(ep.rewards.sum()) < k, "need both arms tried for a fair test"
    one = adapt(model, ep, lr=1.0, steps=1, gamma=0.99, lam=0.95)
    three = adapt(model, ep, lr=1.0, steps=3, gamma=0.99, lam=0.95)
    assert p_arm(one, good) > before + 0.01  # the expected return is p(good arm)
    assert p_arm(three, good) > p_arm(one, good)
    assert p_arm(model, good) == before, "adapt must not touch the original"
    changed = {n for n, p in one.named_parameters() if not torch.equal(p, dict(model.named_parameters())[n])}
    assert changed and all(n.startswith("actor.") for n in changed), changed


def test_batched_inner_loop_equals_adapting_each_instance_alone() -> None:
    model = bandit_policy(3)
    eps = [bandit_episodes(model, good, 6, seed=good) for good in (0, 1, 1)]
    batched = Episodes(*(torch.cat(parts, dim=1) for parts in zip(*eps, strict=True)))
    theta = {n: p.detach() for n, p in actor_parameters(model).items()}
    params = inner_steps(model, theta, InnerBatch.of(batched, 3, 0.99, 0.95), lr=0.5, steps=2)
    for i, ep in enumerate(eps):
        alone = dict(adapt(model, ep, lr=0.5, steps=2, gamma=0.99, lam=0.95).named_parameters())
        for name, p in params.items():
            torch.testing.assert_close(p[i], alone[name])


def test_play_conversations_keeps_one_whole_conversation_per_column() -> None:
    envs = gym.make_vec("simulators:simulators/SegmentDialogue-v0", num_envs=6, vectorization_mode="vector_entry_point")
    torch.manual_seed(0)
    ep = play_conversations(lambda o, m: bandit_or_uniform(o, m), envs, seed=4)
    valid = ep.valid.bool()
    ends = (ep.dones.bool() & valid).sum(0)
    assert ends.tolist() == [1] * 6
    lengths = valid.sum(0)
    assert ep.obs.shape[0] == int(lengths.max()), "the window ends with the longest conversation"
    for col in range(6):  # valid steps are a prefix that ends with the conversation's last turn
        n = int(lengths[col])
        assert valid[:n, col].all() and not valid[n:, col].any() and ep.dones[n - 1, col] == 1
    assert ep.turns == int(lengths.sum())


def bandit_or_uniform(obs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform over the valid acts (a stand-in policy)."""
    return torch.zeros_like(mask).masked_fill(mask < 0.5, -1e9), torch.zeros(len(obs))


def small_maml(make_config: Callable[..., Any], **overrides: Any) -> MAMLConfig:
    base = {k: v for k, v in make_config().model_dump().items() if k != "variant"} | {
        "num_envs": 8,
        "meta_batch": 6,
        "minibatches": 2,
        "inner_conversations": 3,
        "outer_conversations": 4,
        "eval_episodes": 30,
        **overrides,
    }
    return MAMLConfig.from_dict(base)


def test_trains_counts_its_turns_saves_loads_and_resumes(make_config: Callable[..., Any], tmp_path: Path) -> None:
    cfg = small_maml(make_config, total_steps=400, checkpoint_every=1, eval_every=2)
    trainer = MAMLTrainer(cfg, tmp_path / "run")
    played: list[int] = []
    original_phase = trainer._play_phase

    def counting(phase: str, policies: list) -> Episodes:
        ep = original_phase(phase, policies)
        played.append(ep.turns)
        assert ep.obs.shape[1] == cfg.meta_batch * (
            cfg.inner_conversations if phase == "inner" else cfg.outer_conversations
        )
        return ep

    trainer._play_phase = counting  # type: ignore[method-assign]
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train(stop_after=2)
    assert trainer.update == 2 and trainer.global_step == sum(played) and len(played) == 4
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    h = trainer.history[-1]
    assert {"eval/mean_return", "eval/adapted_return", "losses/policy"} <= set(h)

    card = trainer.export(tmp_path / "ckpt")
    assert card.network.variant == "agnostic" and card.config["inner_lr"] == cfg.inner_lr
    loaded = Agent.load(tmp_path / "ckpt")
    a, b = (play(w, cfg.env_id, cfg.env_kwargs, 40, seed=1, batch=20) for w in (Agent(trainer.model, card), loaded))
    np.testing.assert_array_equal(a.returns, b.returns)

    resumed = MAMLTrainer(cfg, tmp_path / "run")
    assert resumed.try_resume() and resumed.global_step == trainer.global_step
    resumed.train()
    assert resumed.global_step >= cfg.total_steps and resumed.update > 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"meta_batch": 6, "minibatches": 4}, r"meta_batch \(6\) must be a multiple of minibatches \(4\)"),
        ({"meta_batch": 4, "minibatches": 2}, r"meta_batch \(4\) must be a multiple of the number of tasks \(3\)"),
        ({"inner_lr": 0.0}, "inner_lr = 0.0: Input should be greater than 0"),
        ({"inner_steps": 0}, "inner_steps = 0: Input should be greater than 0"),
        ({"variant": "contextual"}, "variant = \"contextual\": Input should be 'agnostic'"),
    ],
)
def test_config_errors(
    make_config: Callable[..., Any], tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        MAMLTrainer(small_maml(make_config, **overrides), tmp_path)
