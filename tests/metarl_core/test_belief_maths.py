"""The belief's maths against closed forms and independent computations.

- ``kl_to_standard_normal`` equals ``torch.distributions.kl_divergence`` to N(0, 1), summed.
- The product of the prior N(0, I) and Gaussian factors (``factor_natural``, ``posterior``,
  ``batch_posterior``) equals the precision-weighted closed form: by hand in 1-D, against
  multiplying the densities on a grid, and per dimension in several dimensions.
- ``BeliefState.update`` (NumPy, float64, one turn at a time) equals ``batch_posterior``; the
  posterior does not depend on the order of the turns; ``BeliefState`` serialises and validates.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from metarl_core.belief import (
    LOGVAR_MIN_MAX,
    BeliefState,
    batch_posterior,
    factor_natural,
    kl_to_standard_normal,
    posterior,
)


def random_factors(n: int, z: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` Gaussian factors over ``z`` dimensions: means ``(n, z)`` and log-variances in [-3, 3]."""
    g = torch.Generator().manual_seed(seed)
    mean = 2.0 * torch.randn(n, z, generator=g, dtype=torch.float64)
    logvar = 6.0 * torch.rand(n, z, generator=g, dtype=torch.float64) - 3.0
    return mean, logvar


def normal_pdf(x: np.ndarray, mean: float, var: float) -> np.ndarray:
    return np.exp(-0.5 * (x - mean) ** 2 / var) / math.sqrt(2.0 * math.pi * var)


# -- KL ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1,), (5,), (7, 3), (4, 6, 2)])
def test_kl_matches_torch_distributions(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(sum(shape))
    mean = 3.0 * torch.randn(*shape, generator=g, dtype=torch.float64)
    var = torch.exp(4.0 * torch.rand(*shape, generator=g, dtype=torch.float64) - 2.0)
    expected = kl_divergence(Normal(mean, var.sqrt()), Normal(torch.zeros_like(mean), torch.ones_like(var))).sum(-1)
    got = kl_to_standard_normal(mean, var)
    assert got.shape == shape[:-1]
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_kl_by_hand() -> None:
    z = torch.zeros(3, dtype=torch.float64)
    assert float(kl_to_standard_normal(z, torch.ones(3, dtype=torch.float64))) == 0.0
    # 1-D by hand: KL(N(1, 4) || N(0, 1)) = 0.5 * (4 + 1 - 1 - ln 4).
    got = float(
        kl_to_standard_normal(torch.tensor([1.0], dtype=torch.float64), torch.tensor([4.0], dtype=torch.float64))
    )
    assert got == pytest.approx(0.5 * (4.0 - math.log(4.0)), rel=1e-12)


# -- the product of Gaussians --------------------------------------------------------------------
def test_factor_natural_and_posterior_invert_each_other() -> None:
    mean, logvar = random_factors(6, 3, seed=1)
    eta, lam = factor_natural(mean, logvar)
    torch.testing.assert_close(lam, 1.0 / logvar.exp())
    m, v = posterior(eta, lam)
    torch.testing.assert_close(m, mean)
    torch.testing.assert_close(v, logvar.exp())


def test_two_factors_in_one_dimension_by_hand() -> None:
    # Prior N(0, 1), factors N(1, 0.5) and N(-2, 2):
    # precision = 1 + 1/0.5 + 1/2 = 3.5, eta = 1/0.5 - 2/2 = 1, mean = 1/3.5, variance = 1/3.5.
    mean = torch.tensor([[1.0], [-2.0]], dtype=torch.float64)
    logvar = torch.log(torch.tensor([[0.5], [2.0]], dtype=torch.float64))
    m, v = batch_posterior(mean, logvar)
    assert float(m) == pytest.approx(1.0 / 3.5, rel=1e-12)
    assert float(v) == pytest.approx(1.0 / 3.5, rel=1e-12)


def test_no_factors_is_the_prior() -> None:
    m, v = batch_posterior(torch.zeros(0, 3), torch.zeros(0, 3))
    torch.testing.assert_close(m, torch.zeros(3))
    torch.testing.assert_close(v, torch.ones(3))


@pytest.mark.parametrize("n_factors", [1, 2, 5])
def test_product_of_densities_on_a_grid(n_factors: int) -> None:
    """Multiply N(0, 1) by the factors' densities numerically; its moments are the posterior's."""
    mean, logvar = random_factors(n_factors, 1, seed=10 + n_factors)
    m, v = batch_posterior(mean, logvar)
    x = np.linspace(-12.0, 12.0, 200_001)
    dx = x[1] - x[0]
    density = normal_pdf(x, 0.0, 1.0)
    for mu, lv in zip(mean[:, 0].tolist(), logvar[:, 0].tolist(), strict=True):
        density = density * normal_pdf(x, mu, math.exp(lv))
    density /= density.sum() * dx
    grid_mean = float((x * density).sum() * dx)
    grid_var = float(((x - grid_mean) ** 2 * density).sum() * dx)
    assert float(m) == pytest.approx(grid_mean, abs=1e-7)
    assert float(v) == pytest.approx(grid_var, rel=1e-6)
    # And pointwise: the normalised product is the Gaussian density with those moments.
    np.testing.assert_allclose(density, normal_pdf(x, float(m), float(v)), atol=1e-6 * density.max())


def test_product_is_per_dimension_precision_weighted() -> None:
    mean, logvar = random_factors(4, 3, seed=2)
    m, v = batch_posterior(mean, logvar)
    for d in range(3):
        prec = 1.0 + sum(math.exp(-lv) for lv in logvar[:, d].tolist())
        weighted = sum(mu * math.exp(-lv) for mu, lv in zip(mean[:, d].tolist(), logvar[:, d].tolist(), strict=True))
        assert float(v[d]) == pytest.approx(1.0 / prec, rel=1e-12)
        assert float(m[d]) == pytest.approx(weighted / prec, rel=1e-12)


def test_batch_posterior_handles_batch_dimensions() -> None:
    """Factors ``(n, B, z)``: each column is its own posterior."""
    mean, logvar = random_factors(5, 2 * 3, seed=3)
    mean, logvar = mean.view(5, 2, 3), logvar.view(5, 2, 3)
    m, v = batch_posterior(mean, logvar)
    assert m.shape == v.shape == (2, 3)
    for b in range(2):
        mb, vb = batch_posterior(mean[:, b], logvar[:, b])
        torch.testing.assert_close(m[b], mb)
        torch.testing.assert_close(v[b], vb)


def test_posterior_is_permutation_invariant() -> None:
    mean, logvar = random_factors(9, 3, seed=4)
    m, v = batch_posterior(mean, logvar)
    for seed in range(5):
        perm = torch.randperm(9, generator=torch.Generator().manual_seed(seed))
        mp, vp = batch_posterior(mean[perm], logvar[perm])
        torch.testing.assert_close(mp, m, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(vp, v, rtol=1e-12, atol=1e-12)


def test_more_turns_never_increase_the_variance() -> None:
    mean, logvar = random_factors(10, 2, seed=5)
    variances = torch.stack([batch_posterior(mean[:k], logvar[:k])[1] for k in range(11)])
    assert (variances[1:] < variances[:-1]).all()


# -- BeliefState -----------------------------------------------------------------------------------
def test_belief_state_prior() -> None:
    b = BeliefState.prior(3)
    assert b.turns == 0
    np.testing.assert_array_equal(b.mean, np.zeros(3))
    np.testing.assert_array_equal(b.variance, np.ones(3))


@pytest.mark.parametrize("n_turns", [1, 3, 12])
def test_belief_state_update_matches_batch_posterior(n_turns: int) -> None:
    mean, logvar = random_factors(n_turns, 4, seed=n_turns)
    state = BeliefState.prior(4)
    for k in range(n_turns):
        state = state.update(mean[k].numpy(), logvar[k].numpy())
        m, v = batch_posterior(mean[: k + 1], logvar[: k + 1])
        assert state.turns == k + 1
        np.testing.assert_allclose(state.mean, m.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(state.variance, v.numpy(), rtol=1e-12, atol=1e-12)


def test_belief_state_update_is_order_independent() -> None:
    mean, logvar = random_factors(6, 2, seed=6)
    forward, backward = BeliefState.prior(2), BeliefState.prior(2)
    for k in range(6):
        forward = forward.update(mean[k].numpy(), logvar[k].numpy())
        backward = backward.update(mean[5 - k].numpy(), logvar[5 - k].numpy())
    np.testing.assert_allclose(forward.eta, backward.eta, rtol=1e-12)
    np.testing.assert_allclose(forward.precision, backward.precision, rtol=1e-12)


def test_belief_state_update_clips_log_variance_like_the_encoder() -> None:
    """``BeliefEncoder`` clamps log-variances to +-LOGVAR_MIN_MAX; ``update`` applies the same bound."""
    prior = BeliefState.prior(2)
    wild = prior.update([1.0, 1.0], [-50.0, 50.0])
    bounded = prior.update([1.0, 1.0], [-LOGVAR_MIN_MAX, LOGVAR_MIN_MAX])
    assert wild == bounded
    assert all(math.isfinite(p) for p in wild.precision)


def test_belief_state_is_immutable_and_round_trips_through_a_dict() -> None:
    state = BeliefState.prior(2).update([0.5, -1.0], [0.1, -0.2]).update([2.0, 0.0], [1.0, 0.0])
    again = BeliefState.from_dict(state.to_dict())
    assert again == state
    with pytest.raises(AttributeError):
        state.turns = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    "data",
    [
        {"eta": [0.0, 0.0], "precision": [1.0]},
        {"eta": [0.0], "precision": [0.0]},
        {"eta": [0.0], "precision": [-1.0]},
    ],
)
def test_belief_state_from_dict_rejects_invalid_beliefs(data: dict) -> None:
    with pytest.raises(ValueError, match="positive precision"):
        BeliefState.from_dict(data)
