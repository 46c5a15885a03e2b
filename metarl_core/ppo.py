"""PPO for contextual meta-RL, with the belief encoder trained end to end.

Why PPO for the shipped policy (and not PEARL's off-policy SAC, which ``metarl_core.sac`` also
provides): the simulators are cheap (hundreds of thousands of turns per second), so sample
efficiency matters less than wall time and stability on two CPU cores; PPO on thousands of
vectorised dialogues is simple, stable and fast, and the belief is updated after every turn inside
a conversation, which on-policy sequences give us for free. The method comparison measures the
trade (README, "Method comparison"): SAC needs several times fewer dialogue turns to reach a given
return, but each turn costs it several times more compute (gradient steps on replayed
conversations), and PPO's whole 6M-turn default training fits the 15-minute budget. The
encoder gets its gradients through the actor and critic (as VariBAD's policy does through its
belief input), from beta * KL(q(z | c) || N(0, I)) and, during training only, from an auxiliary
segment-classification loss on the posterior mean (labels from ``info``).

Sequences: every update uses whole rollouts of ``rollout_steps`` steps per environment column,
so the posterior at each step can be recomputed with the current encoder (``streaming_posteriors``,
carrying the natural parameters in from the previous rollout like a recurrent policy's hidden
state). Minibatches split columns, not steps. The turn limit is part of the MDP (the observation
carries it), so truncation is treated as the end of the episode.

The config is ``metarl_core.config.PPOConfig``; losses (``losses/*``) and charts (``charts/*``)
follow CleanRL's layout. The loop, evaluation, resume, export and the memory carried from step to
step (the belief's natural parameters, restarted where a new user starts) are the core's
(``metarl_core.trainer.Trainer``). ``_sequence_inputs`` recomputes the policy inputs of a rollout,
so that RL^2 (``metarl_core.rl2``) trains with this same learner on its recurrent state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from metarl_core.belief import kl_to_standard_normal, streaming_posteriors
from metarl_core.config import PPOConfig, PPOUpdateConfig
from metarl_core.trainer import Trainer


@dataclass
class Rollout:
    """One rollout, ``(T, B, ...)`` tensors, plus the policy's memory carried into it."""

    obs: torch.Tensor
    masks: torch.Tensor
    starts: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    dones: torch.Tensor
    labels: torch.Tensor
    tasks: torch.Tensor
    carry0: tuple[torch.Tensor, ...]
    """(eta, precision) of the belief; RL^2's (state, previous act, previous reward)."""


class PPOTrainer(Trainer):
    """PPO on whole rollouts of the vectorised environment (the module docstring)."""

    CONFIG: ClassVar[type[PPOUpdateConfig]] = PPOConfig
    cfg: PPOUpdateConfig

    def _sequence_inputs(self, r: Rollout, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Policy inputs ``(T, |c|, ...)`` of rollout columns ``c`` with the current networks, and the
        KL and auxiliary segment losses of their beliefs."""
        mean = var = None
        kl = torch.zeros(())
        aux = torch.zeros(())
        if self.model.encoder is not None:
            f_mean, f_logvar = self.model.encoder(r.obs[:, c])
            eta0, precision0 = r.carry0
            mean, var, _, _ = streaming_posteriors(f_mean, f_logvar, r.starts[:, c], eta0[c], precision0[c])
            kl = kl_to_standard_normal(mean, var).mean()
            if self.model.segment_head is not None:
                aux = F.cross_entropy(self.model.segment_head(mean).flatten(0, 1), r.labels[:, c].flatten())
        return self.model.inputs(r.obs[:, c], mean, var, r.tasks[:, c]), kl, aux

    # -- one rollout ---------------------------------------------------------------------------

    @torch.no_grad()
    def collect(self) -> Rollout:
        cfg, steps, b = self.cfg, self.cfg.rollout_steps, self.cfg.num_envs
        buf: dict[str, list[torch.Tensor]] = {
            k: []
            for k in ("obs", "masks", "starts", "actions", "logprobs", "values", "rewards", "dones", "labels", "tasks")
        }
        carry0 = tuple(t.clone() for t in self.carry)
        carry = self.carry
        for _ in range(steps):
            o, mask, task, x, carry = self._step_inputs(carry)
            logits, value = self.model(x, mask)
            dist = torch.distributions.Categorical(logits=logits)
            action = dist.sample()
            buf["obs"].append(o)
            buf["masks"].append(mask)
            buf["starts"].append(self.starts.clone())
            buf["actions"].append(action)
            buf["logprobs"].append(dist.log_prob(action))
            buf["values"].append(value)
            buf["labels"].append(torch.as_tensor(np.asarray(self.info[cfg.label_key]), dtype=torch.long))
            buf["tasks"].append(task)
            self.obs, reward, terminated, truncated, self.info = self.envs.step(action.numpy())
            reward = self._training_reward(reward)
            done = np.asarray(terminated | truncated)
            carry = self._after_step(carry, action, torch.as_tensor(reward, dtype=torch.float32))
            buf["rewards"].append(torch.as_tensor(reward, dtype=torch.float32))
            buf["dones"].append(torch.as_tensor(done, dtype=torch.float32))
            self.starts = self._memory_starts(done)
            if done.any():
                self.recent_returns.extend(np.asarray(self.info["episode_return"])[done].tolist())
                self.recent_success.extend(np.asarray(self.info["success"])[done].astype(float).tolist())
        self.carry = carry
        self.global_step += steps * b
        stacked = {k: torch.stack(v) for k, v in buf.items()}
        return Rollout(**stacked, carry0=carry0)

    @torch.no_grad()
    def bootstrap_value(self) -> torch.Tensor:
        """The critic's value of the observation after the rollout (the carried memory is not advanced)."""
        _, mask, _, x, _ = self._step_inputs(self.carry)
        return self.model(x, mask)[1]

    def advantages(self, r: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE(lambda) advantages and returns."""
        adv = gae(r.rewards, r.values, r.dones, self.bootstrap_value(), self.cfg.gamma, self.cfg.gae_lambda)
        return adv, adv + r.values

    # -- one update ----------------------------------------------------------------------------
    def learn(self, r: Rollout) -> dict[str, float]:
        cfg = self.cfg
        adv, ret = self.advantages(r)
        cols = cfg.num_envs // cfg.minibatches
        stats: dict[str, list[float]] = {}
        for _ in range(cfg.update_epochs):
            perm = torch.randperm(cfg.num_envs)
            for i in range(cfg.minibatches):
                c = perm[i * cols : (i + 1) * cols]
                x, kl, aux = self._sequence_inputs(r, c)
                logits, value = self.model(x, r.masks[:, c])
                dist = torch.distributions.Categorical(logits=logits)
                logp = dist.log_prob(r.actions[:, c])
                ratio = torch.exp(logp - r.logprobs[:, c])
                a = adv[:, c]
                a = (a - a.mean()) / (a.std() + 1e-8)
                pg_loss = torch.max(-a * ratio, -a * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()
                v_loss = 0.5 * (value - ret[:, c]).pow(2).mean()
                entropy = dist.entropy().mean()
                loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy + cfg.kl_beta * kl + cfg.aux_coef * aux
                self.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                for k, v in (
                    ("policy", pg_loss),
                    ("value", v_loss),
                    ("entropy", entropy),
                    ("kl", kl),
                    ("aux_segment", aux),
                ):
                    stats.setdefault(k, []).append(float(v.detach()))
                stats.setdefault("approx_kl", []).append(float(((ratio - 1) - torch.log(ratio)).mean().detach()))
        return {f"losses/{k}": float(np.mean(v)) for k, v in stats.items()}

    def iteration(self) -> dict[str, float]:
        """One rollout and one PPO update; returns the losses."""
        return self.learn(self.collect())


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    next_value: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """GAE(lambda) advantages of ``(T, B)`` steps; ``next_value`` is the value after the last step."""
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[0])
    steps = rewards.shape[0]
    for t in reversed(range(steps)):
        nv = next_value if t == steps - 1 else values[t + 1]
        live = 1.0 - dones[t]
        delta = rewards[t] + gamma * nv * live - values[t]
        last = delta + gamma * lam * live * last
        adv[t] = last
    return adv
