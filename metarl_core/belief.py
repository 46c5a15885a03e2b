"""The belief over the user: a diagonal Gaussian posterior q(z | turns so far).

Each observed turn goes through ``BeliefEncoder`` to a Gaussian factor N(mu_i, sigma_i^2). The
posterior is the product of the factors with the prior N(0, I) (PEARL's factorisation, Rakelly et
al. 2019), which is Gaussian with natural parameters

    precision = 1 + sum_i 1 / sigma_i^2,        eta = sum_i mu_i / sigma_i^2,

so it is permutation invariant and one turn updates it in O(1) by adding that turn's natural
parameters. ``BeliefState`` holds them for one conversation (what the service stores); the torch
functions below do the same for batches during training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

# Factor variances are kept in [exp(-LOGVAR_MIN_MAX), exp(LOGVAR_MIN_MAX)] for numerical safety.
LOGVAR_MIN_MAX = 8.0


@dataclass(frozen=True)
class BeliefState:
    """Natural parameters of the posterior of one conversation, plus how many turns it has seen."""

    eta: tuple[float, ...]
    precision: tuple[float, ...]
    turns: int = 0

    @classmethod
    def prior(cls, latent_dim: int) -> BeliefState:
        """N(0, I): no turn seen yet."""
        return cls(eta=(0.0,) * latent_dim, precision=(1.0,) * latent_dim, turns=0)

    def update(self, factor_mean: npt.ArrayLike, factor_logvar: npt.ArrayLike) -> BeliefState:
        """The posterior after one more turn with factor N(mean, exp(logvar))."""
        lam = np.exp(-np.clip(np.asarray(factor_logvar, dtype=np.float64), -LOGVAR_MIN_MAX, LOGVAR_MIN_MAX))
        eta = np.asarray(self.eta) + lam * np.asarray(factor_mean, dtype=np.float64)
        precision = np.asarray(self.precision) + lam
        return BeliefState(tuple(eta.tolist()), tuple(precision.tolist()), self.turns + 1)

    @property
    def mean(self) -> npt.NDArray[np.float64]:
        return np.asarray(self.eta) / np.asarray(self.precision)

    @property
    def variance(self) -> npt.NDArray[np.float64]:
        return 1.0 / np.asarray(self.precision)

    def to_dict(self) -> dict[str, list[float] | int]:
        return {"eta": list(self.eta), "precision": list(self.precision), "turns": self.turns}

    @classmethod
    def from_dict(cls, data: dict) -> BeliefState:
        eta, precision = data["eta"], data["precision"]
        if len(eta) != len(precision) or any(p <= 0 for p in precision):
            raise ValueError("a belief needs eta and precision of equal length with positive precision")
        return cls(tuple(float(x) for x in eta), tuple(float(x) for x in precision), int(data.get("turns", 0)))


class BeliefEncoder(nn.Module):
    """Maps one turn's features to the mean and log-variance of its Gaussian factor."""

    def __init__(self, input_dim: int, latent_dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.net = nn.Sequential(
            nn.Linear(input_dim, hidden),
            nn.Tanh(),
            nn.Linear(hidden, hidden),
            nn.Tanh(),
            nn.Linear(hidden, 2 * latent_dim),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(x)
        mean, logvar = out.split(self.latent_dim, dim=-1)
        return mean, logvar.clamp(-LOGVAR_MIN_MAX, LOGVAR_MIN_MAX)


def factor_natural(mean: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(precision * mean, precision) of factors given as (mean, log-variance)."""
    lam = torch.exp(-logvar)
    return lam * mean, lam


def posterior(eta: torch.Tensor, precision: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, variance) of the Gaussian with natural parameters (eta, precision)."""
    return eta / precision, 1.0 / precision


def batch_posterior(mean: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior (mean, variance) of the prior times all factors along dim 0, in one go."""
    eta, lam = factor_natural(mean, logvar)
    return posterior(eta.sum(0), 1.0 + lam.sum(0))


def belief_step(
    eta: torch.Tensor, precision: torch.Tensor, starts: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Natural parameters after one turn: back to the prior where ``starts`` (bool, ``(B,)``) is
    true, then plus the turn's factor N(mean, exp(logvar)). The one update rule of training and use."""
    f_eta, f_lam = factor_natural(mean, logvar)
    start = starts.unsqueeze(-1).to(mean.dtype)
    return (1.0 - start) * eta + f_eta, (1.0 - start) * precision + start + f_lam


def streaming_posteriors(
    mean: torch.Tensor, logvar: torch.Tensor, starts: torch.Tensor, eta0: torch.Tensor, precision0: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Posterior after every step of ``(T, B, ...)`` sequences of factors, resetting at episode starts.

    ``starts[t, b]`` is true where step t begins a new conversation in column b; ``eta0`` and
    ``precision0`` are the natural parameters carried into step 0 (used where ``starts[0]`` is
    false). Returns (means, variances, eta, precision) of the posteriors, each ``(T, B, z)``; the
    last two at T-1 are what to carry into the next call.
    """
    etas, precs = [], []
    eta, prec = eta0, precision0
    for t in range(mean.shape[0]):
        eta, prec = belief_step(eta, prec, starts[t], mean[t], logvar[t])
        etas.append(eta)
        precs.append(prec)
    eta_all, prec_all = torch.stack(etas), torch.stack(precs)
    m, v = posterior(eta_all, prec_all)
    return m, v, eta_all, prec_all


def kl_to_standard_normal(mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, diag variance) || N(0, I)), summed over the last dimension."""
    return 0.5 * (variance + mean.pow(2) - 1.0 - torch.log(variance)).sum(-1)
