"""Bundled toy data with known densities: the ring of 8 Gaussians (2-D) and a 1-D mixture.

Both are ``torch.distributions.MixtureSameFamily`` objects, so the data density is exact and
D*, JSD and mode coverage can be computed against it. The ring follows Metz et al., *Unrolled
Generative Adversarial Networks* (ICLR 2017), §3.1: 8 modes evenly spaced on a circle.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal

__all__ = ["TOYS", "ModeCoverage", "Toy", "get_toy", "mixture1d", "mode_coverage", "ring"]


@dataclass(frozen=True)
class Toy:
    """A data distribution with known density and known modes.

    Attributes:
        name: ``"ring"`` or ``"mixture1d"``.
        distribution: the data distribution; event shape ``(2,)`` for the ring, ``()`` in 1-D.
        modes: mode centres, shape ``(K, dim)``.
        mode_std: standard deviation of each mode, shape ``(K,)``.
        weights: mixture weights, shape ``(K,)``.
        limits: a plotting range ``(low, high)`` along each axis.
    """

    name: str
    distribution: Distribution
    modes: torch.Tensor
    mode_std: torch.Tensor
    weights: torch.Tensor
    limits: tuple[float, float]

    @property
    def dim(self) -> int:
        """Dimension of a data point as the networks see it (columns of :meth:`sample`)."""
        return int(self.modes.shape[-1])

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n data points, shape ``(n, dim)``, from the global RNG or ``generator``."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=self.modes.dtype)
        return self.modes[k] + self.mode_std[k, None] * noise

    def as_event(self, x: torch.Tensor) -> torch.Tensor:
        """Points of shape ``(n, dim)`` in the layout of ``distribution`` (drop dim in 1-D)."""
        return x if self.distribution.event_shape else x.squeeze(-1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact data log density at points of shape ``(n, dim)``, shape ``(n,)``."""
        return self.distribution.log_prob(self.as_event(x))


def ring(
    num_modes: int = 8, radius: float = 2.0, std: float = 0.05, dtype: torch.dtype = torch.float32
) -> Toy:
    """Equal mixture of ``num_modes`` isotropic Gaussians (std ``std``) on a circle."""
    angles = torch.arange(num_modes, dtype=dtype) * (2 * math.pi / num_modes)
    modes = radius * torch.stack([angles.cos(), angles.sin()], dim=-1)
    weights = torch.full((num_modes,), 1.0 / num_modes, dtype=dtype)
    stds = torch.full((num_modes,), std, dtype=dtype)
    dist = MixtureSameFamily(
        Categorical(probs=weights), Independent(Normal(modes, stds[:, None].expand_as(modes)), 1)
    )
    lim = radius + 10 * std + 0.5
    return Toy("ring", dist, modes, stds, weights, (-lim, lim))


def mixture1d(dtype: torch.dtype = torch.float32) -> Toy:
    """0.3·N(−3, 0.3²) + 0.4·N(0, 0.3²) + 0.3·N(3, 0.3²)."""
    locs = torch.tensor([-3.0, 0.0, 3.0], dtype=dtype)
    stds = torch.full((3,), 0.3, dtype=dtype)
    weights = torch.tensor([0.3, 0.4, 0.3], dtype=dtype)
    dist = MixtureSameFamily(Categorical(probs=weights), Normal(locs, stds))
    return Toy("mixture1d", dist, locs[:, None], stds, weights, (-5.0, 5.0))


TOYS: dict[str, Callable[..., Toy]] = {"ring": ring, "mixture1d": mixture1d}


def get_toy(name: str) -> Toy:
    """The bundled toy called ``name`` (``"ring"`` or ``"mixture1d"``), with default settings."""
    if name not in TOYS:
        raise ValueError(f"data must be one of {tuple(TOYS)}, got {name!r}")
    return TOYS[name]()


@dataclass(frozen=True)
class ModeCoverage:
    """How generated samples spread over the modes.

    Attributes:
        fractions: fraction of all samples within ``radius_in_std`` standard deviations of each
            mode, shape ``(K,)``.
        covered: number of modes whose fraction is at least ``threshold``.
        high_quality: fraction of samples within ``radius_in_std`` std of some mode.
        threshold: the coverage threshold used (default 5%).
    """

    fractions: torch.Tensor
    covered: int
    high_quality: float
    threshold: float


def mode_coverage(
    samples: torch.Tensor, toy: Toy, *, threshold: float = 0.05, radius_in_std: float = 3.0
) -> ModeCoverage:
    """Mode coverage: a sample counts for its nearest mode if within ``radius_in_std`` of that
    mode's std (the "high quality" rule of Srivastava et al., *VEEGAN*, NeurIPS 2017); a mode is
    covered if it gets at least ``threshold`` of all samples.

    Args:
        samples: shape ``(n, dim)``.
        toy: the data, with its modes.

    Returns:
        :class:`ModeCoverage`.
    """
    if samples.dim() != 2 or samples.shape[1] != toy.dim:
        raise ValueError(
            f"samples must have shape (n, {toy.dim}) for {toy.name!r}, got {tuple(samples.shape)}"
        )
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    dist = torch.cdist(samples.to(toy.modes.dtype), toy.modes)  # (n, K)
    nearest = dist.argmin(dim=1)
    close = dist.gather(1, nearest[:, None])[:, 0] <= radius_in_std * toy.mode_std[nearest]
    counts = torch.bincount(nearest[close], minlength=toy.modes.shape[0])
    fractions = counts.to(toy.modes.dtype) / samples.shape[0]
    return ModeCoverage(
        fractions=fractions,
        covered=int((fractions >= threshold).sum()),
        high_quality=float(close.float().mean()),
        threshold=threshold,
    )
