"""Using a trained policy: load a checkpoint, update the belief, act, read out the segment.

This is the one module the service imports from ``metarl_core``; it imports no training code.

``Agent`` works on batches (evaluation) and on single conversations (the service):

- ``agent.step(obs, mask, belief)`` adds the turn's factor to the belief and picks an act;
- ``agent.segment_probabilities(belief)`` compares the posterior mean with the segment
  prototypes (mean posterior of each named segment after the same number of turns, measured after
  training): p(segment) is proportional to exp(-||mean - prototype||^2 / temperature).

An RL^2 policy (variant ``rl2``) carries a ``RecurrentState`` instead of a belief: the same
``initial_state`` / ``step`` / ``reset`` calls, plus ``observe_rewards`` after every step, since its
memory reads the previous reward too. Its segment read-out uses prototypes of the GRU state the
same way (``readout``: the posterior mean of a belief, the GRU state of a recurrent policy).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from metarl_core.belief import LOGVAR_MIN_MAX, BeliefState, belief_step
from metarl_core.checkpoint import Card, CheckpointError, load_checkpoint
from metarl_core.networks import MASKED_LOGIT, ActorCritic

__all__ = ["Agent", "BatchBelief", "BeliefState", "CheckpointError", "PolicyState", "RecurrentState"]


@dataclass
class BatchBelief:
    """Natural parameters of ``B`` posteriors: eta and precision, each ``(B, z)``, and turns seen."""

    eta: torch.Tensor
    precision: torch.Tensor
    turns: torch.Tensor

    @classmethod
    def prior(cls, batch: int, latent_dim: int) -> BatchBelief:
        return cls(torch.zeros(batch, latent_dim), torch.ones(batch, latent_dim), torch.zeros(batch, dtype=torch.long))

    def reset(self, rows: torch.Tensor) -> None:
        """Back to the prior where ``rows`` (bool) is true."""
        self.eta[rows] = 0.0
        self.precision[rows] = 1.0
        self.turns[rows] = 0

    def observe_rewards(self, rewards: npt.ArrayLike) -> None:
        """Nothing to do: the belief's factors come from observations only."""

    @property
    def mean(self) -> torch.Tensor:
        return self.eta / self.precision

    @property
    def readout(self) -> torch.Tensor:
        """What the segment prototypes are compared with: the posterior mean."""
        return self.mean

    @property
    def variance(self) -> torch.Tensor:
        return 1.0 / self.precision


@dataclass
class RecurrentState:
    """RL^2's memory of ``B`` conversations: the GRU state ``(B, m)``, the previous act (one-hot,
    ``(B, A)``), the previous reward ``(B,)`` and the turns seen."""

    memory: torch.Tensor
    prev_action: torch.Tensor
    prev_reward: torch.Tensor
    turns: torch.Tensor

    @classmethod
    def prior(cls, batch: int, memory_dim: int, n_actions: int) -> RecurrentState:
        return cls(
            torch.zeros(batch, memory_dim),
            torch.zeros(batch, n_actions),
            torch.zeros(batch),
            torch.zeros(batch, dtype=torch.long),
        )

    def reset(self, rows: torch.Tensor) -> None:
        """Forget everything where ``rows`` (bool) is true (a new conversation, or a new user)."""
        self.memory[rows] = 0.0
        self.prev_action[rows] = 0.0
        self.prev_reward[rows] = 0.0
        self.turns[rows] = 0

    def observe_rewards(self, rewards: npt.ArrayLike) -> None:
        """The rewards of the acts just taken (read by the next step)."""
        self.prev_reward = torch.as_tensor(np.asarray(rewards), dtype=torch.float32).clone()

    @property
    def readout(self) -> torch.Tensor:
        """What the segment prototypes are compared with: the GRU state."""
        return self.memory


PolicyState = BatchBelief | RecurrentState


class Agent:
    """A trained policy with its belief encoder and segment prototypes."""

    def __init__(self, model: ActorCritic, card: Card | None = None) -> None:
        self.model = model.eval()
        self.card = card
        self.spec = model.spec
        self.contextual = self.spec.variant == "contextual"
        self.recurrent = self.spec.variant == "rl2"
        self.latent_dim = self.spec.latent_dim if self.contextual else 0
        self.readout_dim = self.latent_dim if self.contextual else self.spec.memory_dim if self.recurrent else 0
        """Size of the state the segment read-out compares with prototypes (0: none)."""
        self._set_prototypes(card)

    @classmethod
    def load(cls, path: str | Path, *, obs_dim: int | None = None, n_actions: int | None = None) -> Agent:
        """Load a checkpoint folder (raises ``CheckpointError`` naming what is wrong)."""
        model, card = load_checkpoint(path, obs_dim=obs_dim, n_actions=n_actions)
        return cls(model, card)

    def _set_prototypes(self, card: Card | None) -> None:
        self.segments: list[str] = list(card.segments) if card else []
        self.prototypes = torch.tensor(card.prototypes, dtype=torch.float32) if card and card.prototypes else None
        temps = card.prototype_temperature if card and card.prototype_temperature else []
        self.temperature = torch.tensor(temps or [1.0], dtype=torch.float32)

    def set_prototypes(self, card: Card) -> None:
        """Use the segments, prototypes and temperatures of ``card`` (after computing them)."""
        self.card = card
        self._set_prototypes(card)

    def initial_belief(self, batch: int = 1) -> BatchBelief:
        return BatchBelief.prior(batch, max(self.latent_dim, 1))

    def initial_state(self, batch: int = 1) -> PolicyState:
        """What the policy carries from turn to turn: a belief, or RL^2's recurrent state."""
        if self.recurrent:
            return RecurrentState.prior(batch, self.spec.memory_dim, self.spec.n_actions)
        return self.initial_belief(batch)

    @torch.no_grad()
    def step(
        self,
        obs: npt.NDArray[np.float32],
        mask: npt.NDArray[np.integer],
        belief: PolicyState,
        *,
        task: npt.NDArray[np.floating] | None = None,
        deterministic: bool = True,
        generator: torch.Generator | None = None,
    ) -> npt.NDArray[np.int64]:
        """Update ``belief`` (or RL^2's state) in place with this turn's observation and return the
        acts ``(B,)``."""
        o = torch.as_tensor(obs, dtype=torch.float32)
        no_start = torch.zeros(len(o), dtype=torch.bool)  # resets are the caller's (``reset``)
        if isinstance(belief, RecurrentState):
            belief.memory = self.model.memory_step(belief.memory, no_start, o, belief.prev_action, belief.prev_reward)
            belief.turns += 1
            x = self.model.inputs(o, memory=belief.memory)
        else:
            if self.contextual:
                assert self.model.encoder is not None
                belief.eta, belief.precision = belief_step(
                    belief.eta, belief.precision, no_start, *self.model.encoder(o)
                )
                belief.turns += 1
            t = torch.as_tensor(task, dtype=torch.float32) if task is not None else None
            x = self.model.inputs(o, belief.mean, belief.variance, t)
        logits, _ = self.model(x, torch.as_tensor(mask, dtype=torch.float32))
        if deterministic:
            acts = logits.argmax(-1)
        else:
            acts = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)
        if isinstance(belief, RecurrentState):
            belief.prev_action = torch.nn.functional.one_hot(acts, self.spec.n_actions).to(torch.float32)
        return acts.numpy()

    @torch.no_grad()
    def segment_probabilities(self, belief: PolicyState) -> npt.NDArray[np.float64]:
        """``(B, n_segments)`` probabilities from the prototypes of the matching turn count."""
        d2, k = self.prototype_distances(belief)
        temp = self.temperature[k.clamp(max=len(self.temperature) - 1)].unsqueeze(-1)
        return torch.softmax(-d2 / temp, dim=-1).double().numpy()

    @torch.no_grad()
    def prototype_distances(self, belief: PolicyState) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, n_segments)`` squared distances to the prototypes of the matching turn count, and
        that turn index ``(B,)``."""
        if self.prototypes is None or not self.readout_dim:
            raise ValueError("this policy has no segment prototypes (train a contextual policy to get them)")
        k = (belief.turns.clamp(min=1) - 1).clamp(max=self.prototypes.shape[0] - 1)
        return (belief.readout.unsqueeze(1) - self.prototypes[k]).pow(2).sum(-1), k

    # -- one conversation (the service) ---------------------------------------------------------
    def act_one(
        self, obs: npt.NDArray[np.float32], mask: npt.NDArray[np.integer], state: BeliefState | None
    ) -> tuple[int, BeliefState]:
        """One turn of one conversation: returns the act and the new belief to store."""
        if self.recurrent:
            raise ValueError("an RL^2 policy keeps a recurrent state, not a belief; the service serves belief policies")
        if state is None:
            state = BeliefState.prior(max(self.latent_dim, 1))
        if len(state.eta) != max(self.latent_dim, 1):
            raise ValueError(f"the stored belief has {len(state.eta)} dimensions, this policy uses {self.latent_dim}")
        if self._numpy is not None:
            return self._act_one_numpy(obs, mask, state)
        belief = BatchBelief(
            torch.tensor([state.eta], dtype=torch.float32),
            torch.tensor([state.precision], dtype=torch.float32),
            torch.tensor([state.turns]),
        )
        act = int(self.step(obs[None], mask[None], belief)[0])
        new = BeliefState(tuple(belief.eta[0].tolist()), tuple(belief.precision[0].tolist()), int(belief.turns[0]))
        return act, new

    @cached_property
    def _numpy(self) -> _NumpyPolicy | None:
        """The contextual policy's encoder and actor in numpy for ``act_one`` (``_NumpyPolicy``),
        copied at the first call: a snapshot, so an ``Agent`` over a model that goes on training
        keeps acting with the weights of that call in ``act_one`` (training code uses ``step``)."""
        return _NumpyPolicy.of(self.model) if self.contextual else None

    def _act_one_numpy(
        self, obs: npt.NDArray[np.float32], mask: npt.NDArray[np.integer], state: BeliefState
    ) -> tuple[int, BeliefState]:
        """``act_one`` on the numpy copy: the turn's factor, the belief update, the greedy act."""
        fast = self._numpy
        assert fast is not None
        o = np.asarray(obs, dtype=np.float32)
        out = fast.encoder(o)
        f_mean = out[: fast.latent_dim]
        f_lam = np.exp(-np.clip(out[fast.latent_dim :], -fast.logvar_limit, fast.logvar_limit))
        eta = np.asarray(state.eta, dtype=np.float32) + f_lam * f_mean
        precision = np.asarray(state.precision, dtype=np.float32) + f_lam
        logits = fast.actor(np.concatenate([o, eta / precision, np.float32(1.0) / precision]))  # ``posterior``
        act = int(np.argmax(np.where(np.asarray(mask) < 0.5, np.float32(MASKED_LOGIT), logits)))
        return act, BeliefState(tuple(eta.tolist()), tuple(precision.tolist()), state.turns + 1)


_Layer = tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None
"""A linear layer's (weight transposed, bias), or None for a tanh."""


class _NumpyMLP:
    """A ``Sequential`` of ``Linear`` and ``Tanh`` layers (what ``networks`` and ``belief`` build) as
    float32 numpy arrays."""

    def __init__(self, layers: list[_Layer]) -> None:
        self.layers = layers

    @classmethod
    def of(cls, seq: torch.nn.Module) -> _NumpyMLP | None:
        """The numpy copy of ``seq``, or None if it holds a layer this class does not implement."""
        if not isinstance(seq, torch.nn.Sequential):
            return None
        layers: list[_Layer] = []
        for m in seq:
            if isinstance(m, torch.nn.Linear) and m.bias is not None:
                layers.append((m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy()))
            elif isinstance(m, torch.nn.Tanh):
                layers.append(None)
            else:
                return None
        return cls(layers)

    def __call__(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        for layer in self.layers:
            if layer is None:
                x = np.tanh(x)
            else:
                w, b = layer
                x = x @ w + b
        return x


@dataclass
class _NumpyPolicy:
    """The belief encoder and the actor of a contextual policy, copied to numpy when ``act_one`` is
    first needed. At batch 1 torch spends most of a turn in per-operator overhead; numpy does the
    same arithmetic with far less (on this project's 2-core machine: act_one p50 664 us with torch,
    83 us with numpy). Same float32 maths as ``BeliefEncoder.forward``, ``belief_step``,
    ``posterior`` and ``ActorCritic.forward``; ``tests/metarl_core/test_belief_streaming.py`` and
    ``tests/test_default_checkpoint.py`` hold ``act_one`` to the torch path's acts and beliefs."""

    encoder: _NumpyMLP
    actor: _NumpyMLP
    latent_dim: int
    logvar_limit: float

    @classmethod
    def of(cls, model: ActorCritic) -> _NumpyPolicy | None:
        if model.encoder is None:
            return None
        encoder, actor = _NumpyMLP.of(model.encoder.net), _NumpyMLP.of(model.actor)
        if encoder is None or actor is None:
            return None
        return cls(encoder, actor, model.encoder.latent_dim, LOGVAR_MIN_MAX)
