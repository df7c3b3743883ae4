"""Images of location–scale (and scale) families under the affine map x ↦ a + b·x.

KL is invariant under a shared invertible map of both arguments, so
KL(p ∘ T⁻¹ ‖ q ∘ T⁻¹) = KL(p ‖ q) for T(x) = a + b·x. The shift is chosen as ``a = −b·loc_p``
(exact in floating point for ``b = 2``), so that the image of p is centred at 0 and the
difference of locations is the only rounding in the map: the check measures the closed form,
not the rounding of its parameters.
"""

from __future__ import annotations

import torch
import torch.distributions as td
from torch.distributions import Distribution

__all__ = ["LOCATION_SCALE", "SCALE_ONLY", "affine_image", "affine_map_for"]

LOCATION_SCALE: tuple[type, ...] = (
    td.Normal,
    td.Laplace,
    td.Cauchy,
    td.Gumbel,
    td.Uniform,
    td.StudentT,
    td.MultivariateNormal,
    td.LowRankMultivariateNormal,
)
SCALE_ONLY: tuple[type, ...] = (td.Exponential, td.Gamma, td.HalfNormal, td.Pareto, td.Weibull)


def _family(d: Distribution) -> str | None:
    if isinstance(d, td.Independent):
        return _family(d.base_dist)
    if isinstance(d, td.Chi2):  # a Gamma whose rate is fixed: not closed under scaling
        return None
    if type(d) in LOCATION_SCALE or (isinstance(d, LOCATION_SCALE) and _pyro_subclass(d)):
        return "location-scale"
    if type(d) in SCALE_ONLY or (isinstance(d, SCALE_ONLY) and _pyro_subclass(d)):
        return "scale"
    return None


def _pyro_subclass(d: Distribution) -> bool:
    return type(d).__module__.startswith("pyro.distributions")


def _loc(d: Distribution) -> torch.Tensor:
    if isinstance(d, td.Independent):
        return _loc(d.base_dist)
    return d.low if isinstance(d, td.Uniform) else d.loc


def affine_map_for(p: Distribution, q: Distribution) -> tuple[torch.Tensor, float] | None:
    """The shared map ``(a, b)`` used for the pair, or ``None`` if a family is not closed under
    it. Location–scale pairs get ``b = 2``, ``a = −2·loc_p``; pairs with a scale-only family
    ``b = 2``, ``a = 0``."""
    fp, fq = _family(p), _family(q)
    if fp is None or fq is None:
        return None
    b = 2.0
    if fp == fq == "location-scale":
        return -b * _loc(p), b
    return torch.zeros(()), b


def affine_image(d: Distribution, a: torch.Tensor, b: float) -> Distribution:
    """The law of ``a + b·X`` for ``X ∼ d`` (``b > 0``), in the same family as ``d``."""
    kw = {"validate_args": False}
    if isinstance(d, td.Independent):
        return td.Independent(affine_image(d.base_dist, a, b), d.reinterpreted_batch_ndims)
    if isinstance(d, td.Uniform):
        return td.Uniform(a + b * d.low, a + b * d.high, **kw)
    if isinstance(d, td.StudentT):
        return type(d)(d.df, a + b * d.loc, b * d.scale, **kw)
    if isinstance(d, (td.Normal, td.Laplace, td.Cauchy, td.Gumbel)):
        return type(d)(a + b * d.loc, b * d.scale, **kw)
    if isinstance(d, td.MultivariateNormal):
        return td.MultivariateNormal(a + b * d.loc, scale_tril=b * d.scale_tril, **kw)
    if isinstance(d, td.LowRankMultivariateNormal):
        return td.LowRankMultivariateNormal(
            a + b * d.loc, b * d.cov_factor, b * b * d.cov_diag, **kw
        )
    if isinstance(d, td.Exponential):
        return type(d)(d.rate / b, **kw)
    if isinstance(d, td.Gamma):
        return type(d)(d.concentration, d.rate / b, **kw)
    if isinstance(d, td.HalfNormal):
        return type(d)(b * d.scale, **kw)
    if isinstance(d, td.Pareto):
        return type(d)(b * d.scale, d.alpha, **kw)
    if isinstance(d, td.Weibull):
        return type(d)(b * d.scale, d.concentration, **kw)
    raise TypeError(f"{type(d).__name__} is not a location-scale or scale family")
