"""RL^2: a recurrent policy whose memory is the adaptation, trained with the core's PPO.

RL^2 (Duan et al. 2016, "Fast Reinforcement Learning via Slow Reinforcement Learning"; Wang et al.
2016, "Learning to reinforcement learn") meta-learns by recurrence: a GRU reads (observation,
previous act one-hot, previous reward) at every turn, and the actor and critic see its state next to
the observation (``ActorCritic`` variant ``rl2``). Nothing tells it about the user; whatever it
infers lives in the state, which is reset where a conversation starts (or, trained on returning users,
where a new user starts), as the contextual belief is.
At evaluation time the state can instead be carried across a returning user's conversations
(``play(..., context_episodes=K)``), which is RL^2's few-shot setting.

Training is the core's PPO (``metarl_core.ppo.PPOTrainer``; config ``metarl_core.config.RL2Config``)
with the recurrent state as the memory carried between steps: each update recomputes the states
over the rollout's ``(T, B)`` sequences with the current GRU (truncated back-propagation through
time at the rollout boundary, where the state carried in is a constant), exactly as the
contextual learner recomputes its beliefs. A
dialogue is at most ``max_turns`` (20) turns, so a 32-step rollout holds most conversations whole.

Returning users (``conversations_per_user = K > 1``, the core trainer's option for any memory):
the training environment keeps each user for K consecutive conversations (the environment keyword
``returning_user_kwarg``), and the state
is reset only where a new user starts (``info[conversation_index_key] == 0``), so the GRU is
trained on what few-shot asks of it: a state carried from a user's earlier conversations,
including the previous conversation's last reward. Returns and advantages still end with each
conversation (every conversation is scored on its own, as in few-shot); only the memory spans
them. A user's first conversation starts from the reset state, exactly as with K = 1, so one
carried RL^2 is measured both within one conversation (a new user) and few-shot. That is why the
comparison (``configs/compare.toml``) trains RL^2 only this way, rather than adding the per-
conversation variant as a sixth method: the reset-every-conversation RL^2 was, by construction,
never trained on the carried state its few-shot figures need (it lost 0.9-1.5 return from a
carried state on the earlier simulator), and a sixth method would add a third to the run's time.
``conversations_per_user = 1`` (the default) is the per-conversation RL^2.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F  # noqa: N812

from metarl_core.config import RL2Config
from metarl_core.networks import NetworkSpec
from metarl_core.ppo import PPOTrainer, Rollout


class RL2Trainer(PPOTrainer):
    """PPO on the ``rl2`` policy; the memory carried between steps is (state, previous act, previous reward)."""

    CONFIG = RL2Config
    cfg: RL2Config

    def _network_spec(self, task_dim: int) -> NetworkSpec:
        return NetworkSpec(
            obs_dim=self.obs_dim,
            n_actions=self.n_actions,
            variant="rl2",
            latent_dim=self.cfg.latent_dim,
            hidden=self.cfg.hidden,
            memory_dim=self.cfg.memory_dim,
        )

    def _initial_carry(self) -> tuple[torch.Tensor, ...]:
        b = self.cfg.num_envs
        return torch.zeros(b, self.cfg.memory_dim), torch.zeros(b, self.n_actions), torch.zeros(b)

    def _step_inputs(
        self, carry: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        o, mask, task = self._observed()
        memory, prev_action, prev_reward = carry
        memory = self.model.memory_step(memory, self.starts, o, prev_action, prev_reward)
        return o, mask, task, self.model.inputs(o, memory=memory), (memory, prev_action, prev_reward)

    def _after_step(
        self, carry: tuple[torch.Tensor, ...], action: torch.Tensor, reward: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        return carry[0], F.one_hot(action, self.n_actions).to(torch.float32), reward

    def _sequence_inputs(self, r: Rollout, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        memory, prev_action0, prev_reward0 = (t[c] for t in r.carry0)
        actions = F.one_hot(r.actions[:-1, c], self.n_actions).to(torch.float32)
        prev_action = torch.cat([prev_action0.unsqueeze(0), actions])
        prev_reward = torch.cat([prev_reward0.unsqueeze(0), r.rewards[:-1, c]])
        states = []
        for t in range(r.obs.shape[0]):
            memory = self.model.memory_step(memory, r.starts[t, c], r.obs[t, c], prev_action[t], prev_reward[t])
            states.append(memory)
        zero = torch.zeros(())
        return self.model.inputs(r.obs[:, c], memory=torch.stack(states)), zero, zero
