"""Discrete soft actor-critic with the belief encoder trained through the critic (PEARL's learner).

PEARL (Rakelly et al. 2019) owes most of its sample efficiency over MAML-style and RL^2 baselines
to being off-policy: every conversation goes into a replay buffer and is learned from many times,
where PPO (``metarl_core.ppo``) learns from each rollout for a few epochs and throws it away. This
module is that learner for our discrete dialogue acts, so the comparison can show how much of the
contextual method's efficiency comes from the belief and how much from the learner (the
comparison trains the segment-agnostic policy with it too).

- Soft actor-critic for discrete actions (Christodoulou 2019): twin Q networks over all acts with
  Polyak-averaged targets, the soft state value computed exactly as the policy-weighted sum over
  the valid acts (masked acts have probability 0), and an entropy temperature tuned so that the
  policy's entropy tracks ``target_entropy_ratio`` times the log of the number of valid acts.
- The replay buffer holds whole conversations (at most ``max_conversation_turns`` turns each), so
  the belief at every turn is recomputed with the current encoder from the conversation's earlier
  turns: the posterior's natural parameters are cumulative sums of the factors (the same product
  of Gaussians as ``belief_step``, which acting uses turn by turn). With returning users
  (``conversations_per_user = K > 1``) a buffer row is one user's K conversations in order, so the
  belief is recomputed across them as acting carries it, and each turn's ``done`` flag ends the
  Bellman backup at the end of its own conversation.
- As in PEARL, the encoder is trained through the critic's Bellman error (plus beta * KL to
  N(0, I) and, training only, the auxiliary segment loss); the actor sees the belief with its
  gradient stopped.
- The policy is the same ``ActorCritic`` as PPO's, so the checkpoint, ``Agent``, the service and
  evaluation are unchanged. Its value head is regressed onto the soft value, so fine-tuning (the
  few-shot baseline, GAE advantages from that head) works on a SAC policy too; acting never uses it.

One iteration collects ``rollout_steps`` turns in each of ``num_envs`` dialogues (acts sampled from
the policy; uniformly among the valid acts before ``learning_starts`` turns) and then takes
``gradient_steps`` gradient steps on ``batch_conversations`` conversations drawn from the buffer.
The loop, logging, periodic evaluation, checkpoints and export are the core's
(``metarl_core.trainer.Trainer``); a resumed run gets back the buffer with the networks.

Returning users (``conversations_per_user = K > 1``, the core trainer's option): the training
environment keeps each user for K conversations and the belief restarts from the prior only for a
new user (``Trainer._memory_starts``), as the comparison's contextual PPO is trained, so few-shot's
carried posterior is one the policy and critics have seen. The buffer then holds
``buffer_conversations // K`` users and a gradient step draws ``batch_conversations // K`` of them
(about the same number of turns as ``batch_conversations`` conversations).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from metarl_core.belief import factor_natural, kl_to_standard_normal, posterior
from metarl_core.config import SACConfig
from metarl_core.networks import MASKED_LOGIT
from metarl_core.trainer import Trainer


def _relu_mlp(inp: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inp, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out)
    )


class QNetwork(nn.Module):
    """Twin soft Q networks over every act, from the policy's input (ReLU, as in SAC)."""

    def __init__(self, inp: int, hidden: int, n_actions: int) -> None:
        super().__init__()
        self.q1 = _relu_mlp(inp, hidden, n_actions)
        self.q2 = _relu_mlp(inp, hidden, n_actions)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q1(x), self.q2(x)


class ReplayBuffer:
    """Whole episodes (a conversation, or a returning user's conversations in order): ``(N, L, ...)``
    tensors and each one's length, filled as a ring. ``dones`` marks the turns that end a conversation."""

    KEYS = ("obs", "masks", "tasks", "actions", "rewards", "labels", "dones")

    def __init__(self, capacity: int, turns: int, obs_dim: int, n_actions: int, task_dim: int) -> None:
        self.capacity, self.turns = capacity, turns
        self.data = {
            "obs": torch.zeros(capacity, turns, obs_dim),
            "masks": torch.zeros(capacity, turns, n_actions, dtype=torch.bool),
            "tasks": torch.zeros(capacity, turns, task_dim),
            "actions": torch.zeros(capacity, turns, dtype=torch.long),
            "rewards": torch.zeros(capacity, turns),
            "labels": torch.zeros(capacity, turns, dtype=torch.long),
            "dones": torch.zeros(capacity, turns, dtype=torch.bool),
        }
        self.lengths = torch.zeros(capacity, dtype=torch.long)
        self.next = 0
        self.size = 0

    def add(self, episodes: dict[str, torch.Tensor], lengths: torch.Tensor) -> None:
        """Store ``len(lengths)`` episodes (each key ``(n, L, ...)``)."""
        n = len(lengths)
        rows = (self.next + torch.arange(n)) % self.capacity
        for k in self.KEYS:
            self.data[k][rows] = episodes[k].to(self.data[k].dtype)
        self.lengths[rows] = lengths
        self.next = int((self.next + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        rows = torch.randint(self.size, (n,), generator=generator)
        return {k: v[rows] for k, v in self.data.items()}, self.lengths[rows]

    def state_dict(self) -> dict[str, Any]:
        """The filled part only (what a resumed run needs)."""
        return {
            "data": {k: v[: self.size].clone() for k, v in self.data.items()},
            "lengths": self.lengths[: self.size].clone(),
            "next": self.next,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        size = len(state["lengths"])
        for k, v in state["data"].items():
            self.data[k][:size] = v
        self.lengths[:size] = state["lengths"]
        self.size, self.next = size, int(state["next"])


class SACTrainer(Trainer):
    """Discrete SAC on the core's policy, with the core's loop, evaluation, resume and export."""

    CONFIG = SACConfig
    cfg: SACConfig

    def __init__(self, cfg: SACConfig, run_dir: str | Path) -> None:
        super().__init__(cfg, run_dir)
        o, _, task = self._observed()
        x = self._policy_input_size(o, task)
        self.q = QNetwork(x, cfg.hidden, self.n_actions)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        critic_params = [*self.q.parameters()]
        for part in (self.model.encoder, self.model.segment_head):
            if part is not None:
                critic_params += list(part.parameters())
        lr = cfg.learning_rate
        # foreach: one kernel per step for all of a network's tensors (about 20% of a gradient step here).
        self.critic_optimizer = torch.optim.Adam(critic_params, lr=lr, foreach=True)
        actor = [*self.model.actor.parameters(), *self.model.critic.parameters()]
        self.optimizer = torch.optim.Adam(actor, lr=lr, foreach=True)
        self.log_alpha = torch.tensor(math.log(cfg.initial_alpha), requires_grad=True)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=lr)
        per_user = cfg.conversations_per_user
        self.buffer = ReplayBuffer(
            cfg.buffer_conversations // per_user,
            per_user * cfg.max_conversation_turns,
            self.obs_dim,
            self.n_actions,
            task.shape[1],
        )
        self.batch_episodes = max(1, cfg.batch_conversations // per_user)
        """Episodes (conversations, or returning users) drawn per gradient step."""
        self.open = {k: torch.zeros_like(v[: cfg.num_envs]) for k, v in self.buffer.data.items()}
        """The episodes under way, one row per environment column."""
        self.open_len = torch.zeros(cfg.num_envs, dtype=torch.long)
        self.conversation_len = torch.zeros(cfg.num_envs, dtype=torch.long)

    def _policy_input_size(self, o: torch.Tensor, task: torch.Tensor) -> int:
        z = torch.zeros(len(o), max(self.cfg.latent_dim, 1))
        return int(self.model.inputs(o, z, z + 1, task).shape[-1])

    # -- resuming: the critics, the temperature and the buffer too ---------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {
            "q": self.q.state_dict(),
            "q_target": self.q_target.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "alpha_optimizer": self.alpha_optimizer.state_dict(),
            "buffer": self.buffer.state_dict(),
        }

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.q.load_state_dict(state["q"])
        self.q_target.load_state_dict(state["q_target"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
        self.buffer.load_state_dict(state["buffer"])
        self.open_len.zero_()  # the environments were reset: no episode is under way
        self.conversation_len.zero_()

    # -- collecting --------------------------------------------------------------------------
    @torch.no_grad()
    def collect_turns(self) -> None:
        """``rollout_steps`` turns in every dialogue; finished episodes (a conversation, or a returning
        user's last one) go into the buffer."""
        cfg, rows = self.cfg, torch.arange(self.cfg.num_envs)
        for _ in range(cfg.rollout_steps):
            o, mask, task, x, self.carry = self._step_inputs(self.carry)
            if self.global_step < cfg.learning_starts:
                logits = torch.zeros_like(mask).masked_fill(mask < 0.5, MASKED_LOGIT)
            else:
                logits, _ = self.model(x, mask)
            action = torch.distributions.Categorical(logits=logits).sample()
            pos = self.open_len
            if int(self.conversation_len.max()) >= cfg.max_conversation_turns:
                raise ValueError(
                    f"a conversation ran past max_conversation_turns ({cfg.max_conversation_turns}); "
                    "set it to the environment's turn limit"
                )
            labels = torch.as_tensor(np.asarray(self.info[cfg.label_key]), dtype=torch.long)
            for k, v in (("obs", o), ("masks", mask > 0.5), ("tasks", task), ("actions", action), ("labels", labels)):
                self.open[k][rows, pos] = v.to(self.open[k].dtype)
            self.obs, reward, terminated, truncated, self.info = self.envs.step(action.numpy())
            reward = self._training_reward(reward)
            self.open["rewards"][rows, pos] = torch.as_tensor(reward, dtype=torch.float32)
            done = np.asarray(terminated | truncated)
            self.open["dones"][rows, pos] = torch.as_tensor(done)
            self.open_len += 1
            self.conversation_len += 1
            self.starts = self._memory_starts(done)  # a new user (every conversation, unless carried)
            if done.any():
                self.conversation_len[torch.as_tensor(done)] = 0
                self.recent_returns.extend(np.asarray(self.info["episode_return"])[done].tolist())
                self.recent_success.extend(np.asarray(self.info["success"])[done].astype(float).tolist())
            if self.starts.any():
                ended = self.starts
                self.buffer.add({k: v[ended] for k, v in self.open.items()}, self.open_len[ended])
                self.open_len[ended] = 0
                self.open["dones"][ended] = False
            self.global_step += cfg.num_envs

    # -- learning ----------------------------------------------------------------------------
    def _conversation_inputs(
        self, batch: dict[str, torch.Tensor], valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Policy inputs ``(M, ...)`` of the ``M`` valid turns (bool ``valid``, ``(N, L)``) of whole
        episodes, packed row by row, with the current encoder (the belief after each turn, carried
        through a returning user's conversations), and the KL and auxiliary segment losses over
        them. Only valid turns go through the networks; padding adds nothing to the cumulative sums."""
        obs = batch["obs"][valid]
        mean = var = None
        kl = aux = torch.zeros(())
        if self.model.encoder is not None:
            f_eta, f_lam = factor_natural(*self.model.encoder(obs))
            eta = torch.zeros(*valid.shape, f_eta.shape[-1]).masked_scatter(valid.unsqueeze(-1), f_eta)
            lam = torch.zeros_like(eta).masked_scatter(valid.unsqueeze(-1), f_lam)
            mean, var = posterior(eta.cumsum(1)[valid], 1.0 + lam.cumsum(1)[valid])
            kl = kl_to_standard_normal(mean, var).mean()
            if self.model.segment_head is not None:
                aux = F.cross_entropy(self.model.segment_head(mean), batch["labels"][valid])
        return self.model.inputs(obs, mean, var, batch["tasks"][valid]), kl, aux

    def _policy(self, x: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(probabilities, log-probabilities) of the masked policy."""
        logits = self.model.actor(x).masked_fill(~masks, MASKED_LOGIT)
        return F.softmax(logits, -1), F.log_softmax(logits, -1)

    @torch.no_grad()
    def soft_targets(
        self,
        x_next: torch.Tensor,
        masks_next: torch.Tensor,
        rewards: torch.Tensor,
        ends: torch.Tensor,
        alpha: torch.Tensor,
    ) -> torch.Tensor:
        """The critics' targets ``(M,)`` of ``M`` turns: each turn's reward plus, unless the turn ends its
        conversation (``ends``), the discounted soft value of the next turn (policy input ``x_next``,
        valid acts ``masks_next``) under the target critics, sum_a pi(a) (min_i Q'_i(a) - alpha log pi(a))."""
        p_next, logp_next = self._policy(x_next, masks_next | ends.unsqueeze(-1))
        q_next = torch.min(*self.q_target(x_next))
        v_next = (p_next * (q_next - alpha * logp_next)).sum(-1)
        return rewards + self.cfg.gamma * (~ends).float() * v_next

    def gradient_step(self) -> dict[str, float]:
        """One step of the critics (and the encoder), the actor (and its value head) and the temperature
        on ``batch_conversations`` conversations' worth of episodes from the buffer; their turns are
        packed, so padding costs nothing."""
        cfg = self.cfg
        batch, lengths = self.buffer.sample(self.batch_episodes)
        turn = torch.arange(self.buffer.turns)
        valid = turn < lengths[:, None]
        alpha = self.log_alpha.exp().detach()

        x, kl, aux = self._conversation_inputs(batch, valid)
        masks = batch["masks"][valid]
        ends = batch["dones"][valid]
        # Packed row by row, a turn that does not end its conversation is followed by the next turn
        # of its row (an episode's last valid turn always ends a conversation).
        x_next = torch.cat([x[1:], x[-1:]]).detach()
        m_next = torch.cat([masks[1:], masks[-1:]])
        target = self.soft_targets(x_next, m_next, batch["rewards"][valid], ends, alpha)
        q1, q2 = self.q(x)
        act = batch["actions"][valid].unsqueeze(-1)
        q1_taken, q2_taken = q1.gather(-1, act).squeeze(-1), q2.gather(-1, act).squeeze(-1)
        q_loss = 0.5 * ((q1_taken - target) ** 2 + (q2_taken - target) ** 2).mean()
        critic_loss = q_loss + cfg.kl_beta * kl + cfg.aux_coef * aux
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        nn.utils.clip_grad_norm_([p for g in self.critic_optimizer.param_groups for p in g["params"]], 10.0)
        self.critic_optimizer.step()

        xd = x.detach()
        p, logp = self._policy(xd, masks)
        with torch.no_grad():
            q_min = torch.min(*self.q(xd))
        actor_loss = (p * (alpha * logp - q_min)).sum(-1).mean()
        soft_value = (p * (q_min - alpha * logp)).sum(-1).detach()
        v_loss = 0.5 * (self.model.critic(xd).squeeze(-1) - soft_value).pow(2).mean()
        self.optimizer.zero_grad()
        (actor_loss + v_loss).backward()
        nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], 10.0)
        self.optimizer.step()

        entropy = -(p * logp).sum(-1).detach()
        target_entropy = cfg.target_entropy_ratio * torch.log(masks.sum(-1).clamp(min=1).float())
        alpha_loss = (self.log_alpha * (entropy - target_entropy)).mean()
        self.alpha_optimizer.zero_grad()
        alpha_loss.backward()
        self.alpha_optimizer.step()

        with torch.no_grad():
            for t, s in zip(self.q_target.parameters(), self.q.parameters(), strict=True):
                t.lerp_(s, cfg.tau)
        return {
            "q": float(q_loss.detach()),
            "policy": float(actor_loss.detach()),
            "value": float(v_loss.detach()),
            "entropy": float(entropy.mean()),
            "kl": float(kl.detach()),
            "aux_segment": float(aux.detach()),
            "alpha": float(alpha),
        }

    def iteration(self) -> dict[str, float]:
        """Collect ``num_envs * rollout_steps`` turns, then ``gradient_steps`` gradient steps."""
        self.collect_turns()
        if self.global_step < self.cfg.learning_starts or self.buffer.size == 0:
            return {}
        stats: dict[str, list[float]] = {}
        for _ in range(self.cfg.gradient_steps):
            for k, v in self.gradient_step().items():
                stats.setdefault(k, []).append(v)
        return {f"losses/{k}": float(np.mean(v)) for k, v in stats.items()}
