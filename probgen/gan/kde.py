r"""JSD between a known data density and a generator known only through samples.

A GAN generator has no tractable density, so JSD(p_data ‖ p_g) is estimated in two steps:

1. a Gaussian kernel density estimate :math:`\hat q_h = \frac1m \sum_j N(\cdot;\, y_j, h^2 I)`
   on m generated samples, with the bandwidth h chosen by held-out likelihood (fit on one half,
   pick h maximizing the mean log density of the other half, then refit on all m);
2. JSD(p_data ‖ q̂_h) by Monte Carlo (:func:`probgen.gan.jsd`), with its standard error.

Bias: :math:`\hat q_h` is p_g smoothed by the kernel, plus sampling noise of the m points, so the
estimate is *not* JSD(p_data ‖ p_g): even a perfect generator (p_g = p_data) scores above 0. The
same estimator applied to m samples from p_data itself gives this floor
(:func:`jsd_floor`), and it is reported next to every estimate. The standard error covers the
Monte Carlo error given q̂_h only, not the variability of the m samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal

from probgen.gan.jsd import jsd
from probgen.gan.toys import Toy

__all__ = ["KDEJSD", "gaussian_kde", "jsd_floor", "jsd_to_samples", "select_bandwidth"]


def gaussian_kde(points: torch.Tensor, bandwidth: float, *, event_dim: int = 1) -> Distribution:
    """Equal mixture of N(y_j, h² I) over ``points`` of shape ``(m, d)``.

    With ``event_dim=0`` (and d = 1) the result has event shape ``()``, else ``(d,)``.
    """
    m = points.shape[0]
    mix = Categorical(logits=torch.zeros(m, dtype=points.dtype))
    scale = torch.full_like(points, bandwidth)
    if event_dim == 0:
        return MixtureSameFamily(mix, Normal(points[:, 0], scale[:, 0]))
    return MixtureSameFamily(mix, Independent(Normal(points, scale), 1))


def select_bandwidth(
    points: torch.Tensor, candidates: torch.Tensor | None = None, generator=None
) -> float:
    """The bandwidth among ``candidates`` with the highest held-out mean log density.

    Default candidates: 30 values from 0.005 to 1 times the mean per-axis standard deviation,
    log-spaced. Half of ``points`` (a random half) fits, the other half scores.
    """
    m, d = points.shape
    perm = torch.randperm(m, generator=generator)
    fit, held = points[perm[: m // 2]], points[perm[m // 2 :]]
    spread = float(points.std(0).mean()) or 1.0
    if candidates is None:
        candidates = spread * torch.logspace(math.log10(0.005), 0.0, 30, dtype=points.dtype)
    sq = torch.cdist(held, fit).square()  # (m_held, m_fit)
    best, best_score = float(candidates[0]), -math.inf
    for h in candidates.tolist():
        log_k = -0.5 * sq / h**2 - d * math.log(h) - 0.5 * d * math.log(2 * math.pi)
        score = float((torch.logsumexp(log_k, dim=1) - math.log(fit.shape[0])).mean())
        if score > best_score:
            best, best_score = h, score
    return best


@dataclass(frozen=True)
class KDEJSD:
    """JSD(p_data ‖ KDE of samples) with its Monte Carlo standard error and the bandwidth."""

    value: float
    stderr: float
    bandwidth: float
    num_points: int


def jsd_to_samples(
    toy: Toy, samples: torch.Tensor, *, num_samples: int = 2000, seed: int = 0
) -> KDEJSD:
    """Estimate JSD(p_data ‖ p_g) from generated ``samples`` of shape ``(m, dim)``: KDE with
    held-out bandwidth, then Monte Carlo JSD with ``num_samples`` draws from each side."""
    samples = samples.detach().to(toy.modes.dtype)
    gen = torch.Generator().manual_seed(seed)
    h = select_bandwidth(samples, generator=gen)
    kde = gaussian_kde(samples, h, event_dim=len(toy.distribution.event_shape))
    est = jsd(
        toy.distribution, kde, method="mc", num_samples=num_samples, generator=gen, return_info=True
    )
    assert est.stderr is not None
    return KDEJSD(float(est.value), float(est.stderr), h, samples.shape[0])


def jsd_floor(toy: Toy, num_points: int, *, num_samples: int = 2000, seed: int = 0) -> KDEJSD:
    """The estimator's value for a perfect generator: :func:`jsd_to_samples` on ``num_points``
    samples from the data itself. Estimates below this cannot be told apart from p_g = p_data."""
    gen = torch.Generator().manual_seed(seed + 1)
    return jsd_to_samples(toy, toy.sample(num_points, gen), num_samples=num_samples, seed=seed)
