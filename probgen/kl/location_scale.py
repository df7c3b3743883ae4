r"""Closed-form KL divergences for location-scale and scale families on the line.

Pairs: Laplace, Gumbel, Cauchy, Uniform, Pareto and Exponential, each with itself, plus the
support mismatches among these families and the normal ones (+inf). Each KL is written as a sum
of terms that are each ≥ 0, built from

.. math::

    g(d) = d - \log(1 + d), \qquad e(y) = e^{y} - 1 - y,

with parameter differences taken directly. (The float64 patches are written in place with
``index_put_``, which autograd allows: the patched tensors are outputs of subtractions and
additions, whose backward does not need them.) ``g`` is evaluated as ``(r - 1) - log r`` on the
ratio ``r = 1 + d`` (``r - 1`` is exact near 1, so the subtraction keeps the sign of g) and
``e`` as ``expm1(y) - y``. In float32 that is accurate enough everywhere (absolute error a few
ulps of the argument: far below 1e-7 where the KL is below 1e-3, relative ≤ 1e-5 elsewhere);
in float64 the few elements where the direct value is tiny are recomputed by a short series.
Derivations and measured errors: ``docs/kl/location_scale.md``.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import (
    Cauchy,
    Distribution,
    Exponential,
    Gumbel,
    HalfNormal,
    Laplace,
    LogNormal,
    Normal,
    Pareto,
    Uniform,
)

from probgen.kl.normal import patch_where
from probgen.kl.registry import register_kl

__all__ = ["e_minus", "g_of_ratio"]

_EULER = 0.57721566490153286061
# float64 only: below these direct values (|d| ≲ 3e-5, |y| ≲ 2e-5, |r − 1| ≲ 3e-5) the direct
# formulas would lose more than ~3e-11 relative; a series takes over on those elements.
_G_SWITCH = 5e-10
_E_SWITCH = 2e-10
_PHI_SWITCH = 7e-10
# ζ(k), k = 2…6 (DLMF 25.6): log Γ(1 + x) + γx = Σ_{k≥2} (−1)^k ζ(k) x^k / k for |x| < 1; for
# |x| ≲ 3e-5 the first omitted term is below 1e-23 relative.
_ZETA = (
    1.6449340668482264365,
    1.2020569031595942854,
    1.0823232337111381915,
    1.0369277551433699263,
    1.0173430619844491397,
)
_PHI_COEFFS = tuple((-1) ** k * z / k for k, z in enumerate(_ZETA, start=2))
# e(y) = y²·Σ_j y^j/(j + 2)!; five terms: y⁵/7! relative to y²/2 is below 1e-25 for |y| ≲ 2e-5.
_E_COEFFS = tuple(1.0 / math.factorial(j + 2) for j in range(5))
# g(d) = d²/2 − d³/3 + d⁴/4 − d⁵/5 + …; d⁶/6 relative to d²/2 is below 1e-18 for |d| ≲ 3e-5.
_G_COEFFS = (1.0 / 2, -1.0 / 3, 1.0 / 4, -1.0 / 5)


def _horner(z: torch.Tensor, coeffs: tuple[float, ...]) -> torch.Tensor:
    acc = torch.full_like(z, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        acc = acc * z + c
    return acc


def _g_series(d: torch.Tensor) -> torch.Tensor:
    """g(d) for |d| ≲ 3e-5: d²·(1/2 − d/3 + d²/4 − d³/5)."""
    return d * d * _horner(d, _G_COEFFS)


def _e_series(y: torch.Tensor) -> torch.Tensor:
    """e(y) for |y| ≲ 2e-5: y²·Σ_j y^j/(j + 2)!, five terms."""
    return y * y * _horner(y, _E_COEFFS)


def _phi_series(x: torch.Tensor) -> torch.Tensor:
    """log Γ(1 + x) + γx for |x| ≲ 3e-5: Σ_{k=2}^{6} (−1)^k ζ(k) x^k / k."""
    return (x * x * _horner(x, _PHI_COEFFS)).clamp_min(0)


def g_of_ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""g(a/b − 1) = a/b − 1 − log(a/b) ≥ 0, batchwise, accurate when a ≈ b.

    Computed as ``(r − 1) − log r`` with ``r = a / b``; in float64, where this is below 5e-10,
    by the power series in ``d = (a − b)/b`` (the difference is exact).

    Args:
        a, b: positive tensors of broadcastable shapes.

    Returns:
        Tensor of shape ``broadcast(a.shape, b.shape)``, ≥ 0.
    """
    r = a / b
    g = (r - 1) - torch.log(r)
    if g.dtype == torch.float64 and g.numel() and float(g.detach().min()) < _G_SWITCH:
        g = patch_where(g, g < _G_SWITCH, lambda a_s, b_s: _g_series((a_s - b_s) / b_s), a, b)
    return g


def e_minus(y: torch.Tensor) -> torch.Tensor:
    r"""e(y) = exp(y) − 1 − y ≥ 0, batchwise; ``expm1(y) − y``, a series below 2e-10 in float64.

    Args:
        y: tensor of any shape.

    Returns:
        Tensor of the same shape, ≥ 0 (``inf`` where exp(y) overflows).
    """
    e = torch.expm1(y) - y
    if e.dtype == torch.float64 and e.numel() and float(e.detach().min()) < _E_SWITCH:
        e = patch_where(e, e < _E_SWITCH, _e_series, y)
    return e


@register_kl(Exponential, Exponential)
def _kl_exponential_exponential(p: Exponential, q: Exponential) -> torch.Tensor:
    r"""Batchwise KL(Exponential(λ_p) ‖ Exponential(λ_q)) = g(λ_q/λ_p − 1).

    (= log(λ_p/λ_q) + λ_q/λ_p − 1.) Result shape: broadcast of the batch shapes.
    Reference: ``docs/kl/location_scale.md``.
    """
    return g_of_ratio(q.rate, p.rate)


@register_kl(Laplace, Laplace)
def _kl_laplace_laplace(p: Laplace, q: Laplace) -> torch.Tensor:
    r"""Batchwise KL(Laplace(μ_p, b_p) ‖ Laplace(μ_q, b_q)) = g(r − 1) + r·e(−|μ_p − μ_q|/b_p).

    r = b_p/b_q. (= log(b_q/b_p) + δ/b_q + r·exp(−δ/b_p) − 1 with δ = |μ_p − μ_q|.) Result
    shape: broadcast of the batch shapes. Reference: ``docs/kl/location_scale.md``.
    """
    r = p.scale / q.scale
    z = (p.loc - q.loc).abs() / p.scale
    return g_of_ratio(p.scale, q.scale) + r * e_minus(-z)


@register_kl(Gumbel, Gumbel)
def _kl_gumbel_gumbel(p: Gumbel, q: Gumbel) -> torch.Tensor:
    r"""Batchwise KL(Gumbel(μ_p, β_p) ‖ Gumbel(μ_q, β_q)) = φ(r) + e(log Γ(1 + r) − δ).

    r = β_p/β_q, δ = (μ_p − μ_q)/β_q (the location difference is taken directly, so distant
    locations do not cancel), φ(r) = log Γ(r) + γ(r − 1) ≥ 0 (convex, zero at r = 1; a
    ζ-series in float64 for |r − 1| ≲ 3e-5). (= −log r + γ(r − 1) + δ + exp(−δ)Γ(1 + r) − 1.)
    Result shape: broadcast of the batch shapes. Reference: ``docs/kl/location_scale.md``.
    """
    r = p.scale / q.scale
    delta = (p.loc - q.loc) / q.scale
    lgam = torch.lgamma(r)
    phi = torch.add(lgam, r - 1, alpha=_EULER)
    y = lgam + torch.log(r) - delta
    kl = e_minus(y) + phi
    if kl.dtype == torch.float64 and kl.numel() and float(phi.detach().min()) < _PHI_SWITCH:
        kl = patch_where(
            kl, phi.expand_as(kl) < _PHI_SWITCH, _gumbel_series, p.scale, q.scale, delta
        )
    return kl


def _gumbel_series(bp: torch.Tensor, bq: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """KL(Gumbel ‖ Gumbel) for |β_p/β_q − 1| ≲ 3e-5, from x = (β_p − β_q)/β_q (exact)."""
    x = (bp - bq) / bq
    phi = _phi_series(x)
    # log Γ(1 + r) = log(1 + x) + log Γ(1 + x) = log1p(x) − γx + φ, without rounding 1 + r.
    y = torch.log1p(x) - _EULER * x + phi - delta
    return e_minus(y) + phi


@register_kl(Cauchy, Cauchy)
def _kl_cauchy_cauchy(p: Cauchy, q: Cauchy) -> torch.Tensor:
    r"""Batchwise KL(Cauchy(μ_p, σ_p) ‖ Cauchy(μ_q, σ_q)) = log1p(((σ_p − σ_q)² + Δ²)/(4σ_pσ_q)).

    Δ = μ_p − μ_q; the argument is formed from ratios (a/σ_p)(a/σ_q) so that it neither
    overflows nor underflows. (= log((σ_p + σ_q)² + Δ²) − log(4σ_pσ_q), Chyzak & Nielsen 2019.)
    Result shape: broadcast of the batch shapes. Reference: ``docs/kl/location_scale.md``.
    """
    a = p.scale - q.scale
    delta = p.loc - q.loc
    w = (a / p.scale) * (a / q.scale) + (delta / p.scale) * (delta / q.scale)
    return torch.log1p(0.25 * w)


@register_kl(Uniform, Uniform)
def _kl_uniform_uniform(p: Uniform, q: Uniform) -> torch.Tensor:
    r"""Batchwise KL(Uniform(l_p, h_p) ‖ Uniform(l_q, h_q)) = log1p(excess / (h_p − l_p)).

    excess = (l_p − l_q) + (h_q − h_p) ≥ 0, both differences taken directly.
    (= log((h_q − l_q)/(h_p − l_p)).) +inf where p's support is not inside q's
    (l_p < l_q or h_p > h_q). Result shape: broadcast of the batch shapes.
    Reference: ``docs/kl/location_scale.md``.
    """
    below, above = p.low - q.low, q.high - p.high
    inside = (below >= 0) & (above >= 0)
    kl = torch.log1p((below.clamp_min(0) + above.clamp_min(0)) / (p.high - p.low))
    return torch.where(inside, kl, math.inf)


@register_kl(Pareto, Pareto)
def _kl_pareto_pareto(p: Pareto, q: Pareto) -> torch.Tensor:
    r"""Batchwise KL(Pareto(x_p, α_p) ‖ Pareto(x_q, α_q)) = g(α_q/α_p − 1) + α_q·log(x_p/x_q).

    log(x_p/x_q) is evaluated as log1p((x_p − x_q)/x_q).
    (= log(α_p/α_q) + α_q log(x_p/x_q) + α_q/α_p − 1.) +inf where x_p < x_q: q's support
    does not cover p's. Result shape: broadcast of the batch shapes.
    Reference: ``docs/kl/location_scale.md``.
    """
    gap = p.scale - q.scale
    kl = g_of_ratio(q.alpha, p.alpha) + q.alpha * torch.log1p(gap.clamp_min(0) / q.scale)
    return torch.where(gap >= 0, kl, math.inf)


_REAL_LINE = (Normal, Laplace, Gumbel, Cauchy)
_HALF_LINE = (Exponential, HalfNormal, LogNormal)
_BOUNDED_BELOW = (Exponential, HalfNormal, LogNormal, Pareto, Uniform)
_NARROW = (Pareto, Uniform)


def _kl_infinity(p: Distribution, q: Distribution) -> torch.Tensor:
    """Batchwise KL(p ‖ q) = +inf: p puts mass where q has none. Shape: broadcast batch shape."""
    like = p.mean
    shape = torch.broadcast_shapes(p.batch_shape, q.batch_shape)
    return torch.full(shape, math.inf, dtype=like.dtype, device=like.device)


# p supported on the whole line, q only on a half-line or an interval; p on (0, ∞), q on an
# interval [l, h] or on [x_q, ∞) with x_q > 0; p on [x_p, ∞), q on an interval.
SUPPORT_MISMATCHES: tuple[tuple[type, type], ...] = (
    *((p, q) for p in _REAL_LINE for q in _BOUNDED_BELOW),
    *((p, q) for p in _HALF_LINE for q in _NARROW),
    (Pareto, Uniform),
)
for _p, _q in SUPPORT_MISMATCHES:
    register_kl(_p, _q)(_kl_infinity)
