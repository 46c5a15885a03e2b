"""Policy and value networks: contextual (state + belief), segment-agnostic, and oracle.

- ``contextual``: a ``BeliefEncoder`` turns each observation into a Gaussian factor; the actor and
  critic see (observation, posterior mean, posterior variance), so they can exploit what is known
  about the user and act to learn more (VariBAD-style Bayes-adaptive input).
- ``agnostic``: the same actor and critic on the observation alone (no latent).
- ``oracle``: the observation plus the true user parameters from ``info`` (normalised); an upper
  reference that no deployed policy can have.
- ``rl2``: RL^2 (Duan et al. 2016; Wang et al. 2016): a GRU over (observation, previous act one-hot,
  previous reward) whose state, reset where a conversation starts, is the memory the actor and
  critic see next to the observation. Adaptation is whatever the recurrence learns to do with it.

Invalid actions are masked by setting their logits to a large negative number.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn

from metarl_core.belief import BeliefEncoder

Variant = Literal["contextual", "agnostic", "oracle", "rl2"]
VARIANTS: tuple[str, ...] = ("contextual", "agnostic", "oracle", "rl2")
MASKED_LOGIT = -1e9


@dataclass(frozen=True)
class NetworkSpec:
    """Everything needed to rebuild the networks (stored in the checkpoint card)."""

    obs_dim: int
    n_actions: int
    variant: Variant = "contextual"
    latent_dim: int = 4
    hidden: int = 128
    encoder_hidden: int = 64
    task_dim: int = 0  # oracle only: the number of true user parameters it is given
    n_segments: int = 0  # contextual only: classes of the auxiliary segment head
    memory_dim: int = 0  # rl2 only: size of the recurrent state

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.variant == "oracle" and self.task_dim < 1:
            raise ValueError("the oracle variant needs task_dim >= 1")
        if self.variant == "rl2" and self.memory_dim < 1:
            raise ValueError("the rl2 variant needs memory_dim >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


def _mlp(inp: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inp, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, out)
    )


class ActorCritic(nn.Module):
    """Actor and critic heads over the variant's input."""

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        self.spec = spec
        extra = 0
        self.encoder: BeliefEncoder | None = None
        self.segment_head: nn.Linear | None = None
        self.memory: nn.GRUCell | None = None
        if spec.variant == "contextual":
            self.encoder = BeliefEncoder(spec.obs_dim, spec.latent_dim, spec.encoder_hidden)
            extra = 2 * spec.latent_dim
            if spec.n_segments > 1:
                self.segment_head = nn.Linear(spec.latent_dim, spec.n_segments)
        elif spec.variant == "oracle":
            extra = spec.task_dim
        elif spec.variant == "rl2":
            self.memory = nn.GRUCell(spec.obs_dim + spec.n_actions + 1, spec.memory_dim)
            extra = spec.memory_dim
        self.register_buffer("task_low", torch.zeros(max(spec.task_dim, 1)))
        self.register_buffer("task_scale", torch.ones(max(spec.task_dim, 1)))
        self.actor = _mlp(spec.obs_dim + extra, spec.hidden, spec.n_actions)
        self.critic = _mlp(spec.obs_dim + extra, spec.hidden, 1)
        # Small initial logits: start close to uniform over valid acts.
        last = self.actor[-1]
        assert isinstance(last, nn.Linear)
        with torch.no_grad():
            last.weight.mul_(0.01)

    def inputs(
        self,
        obs: torch.Tensor,
        belief_mean: torch.Tensor | None = None,
        belief_var: torch.Tensor | None = None,
        task: torch.Tensor | None = None,
        memory: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The actor/critic input for this variant."""
        if self.spec.variant == "contextual":
            if belief_mean is None or belief_var is None:
                raise ValueError("the contextual policy needs the belief (mean and variance)")
            return torch.cat([obs, belief_mean, belief_var], dim=-1)
        if self.spec.variant == "oracle":
            if task is None:
                raise ValueError("the oracle policy needs the true user parameters")
            task_low = self.get_buffer("task_low")
            task_scale = self.get_buffer("task_scale")
            return torch.cat([obs, (task - task_low) / task_scale], dim=-1)
        if self.spec.variant == "rl2":
            if memory is None:
                raise ValueError("the rl2 policy needs its recurrent state")
            return torch.cat([obs, memory], dim=-1)
        return obs

    def memory_step(
        self,
        memory: torch.Tensor,
        starts: torch.Tensor,
        obs: torch.Tensor,
        prev_action: torch.Tensor,
        prev_reward: torch.Tensor,
    ) -> torch.Tensor:
        """RL^2's recurrent state after this turn: the state, previous act (one-hot, ``(B, A)``) and
        previous reward (``(B,)``) count as zero where ``starts`` (bool, ``(B,)``) is true. The one
        update rule of training and use (like ``belief_step`` for the belief)."""
        if self.memory is None:
            raise ValueError(f"the {self.spec.variant} policy has no recurrent state")
        keep = (~starts).unsqueeze(-1).to(obs.dtype)
        # symlog keeps a success bonus and a turn penalty on comparable scales, with no reward constants.
        reward = torch.sign(prev_reward) * torch.log1p(prev_reward.abs())
        x = torch.cat([obs, keep * prev_action, keep * reward.unsqueeze(-1)], dim=-1)
        return self.memory(x, keep * memory)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(masked logits, value) for inputs ``x`` and a 0/1 action mask."""
        logits = self.actor(x).masked_fill(mask < 0.5, MASKED_LOGIT)
        return logits, self.critic(x).squeeze(-1)
