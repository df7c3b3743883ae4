r"""Elementary functions that KL closed forms are built from, accurate to a few ulps.

Most closed-form KLs are a sum of terms of the form

.. math::

    g(x) = x - \log(1 + x) \ge 0, \qquad
    e(y) = e^{y} - 1 - y \ge 0, \qquad
    h(x) = (1 + x)\log(1 + x) - x \ge 0,

evaluated at an argument that is small exactly when the two distributions are close. Written
naively each of them subtracts two nearly equal numbers and loses all accuracy (or turns
negative) near 0. Here each is evaluated directly where that is accurate and by a series where
it is not, so that the result keeps a relative error of a few ulps over the whole domain and is
never negative.

All functions are elementwise, differentiable, and keep the dtype and device of their input.
"""

from __future__ import annotations

import math

import torch

__all__ = ["expm1_minus_x", "one_plus_x_log1p_minus_x", "x_minus_log1p", "x_minus_log1p_dense"]

# Below this |u| the series is used (u = x / (2 + x) for g; u = y for e). The direct formula
# loses about log2(1 / |u|) bits, so at the switch it is still accurate to ~4 ulps.
_SERIES_BELOW = 0.25

# g(x) = 2u²/(1 − u) − 2u³·Σ_k u^{2k}/(2k + 3): 14 terms reach 0.25^28 / 31 < 1e-18.
_G_COEFFS = tuple(1.0 / (2 * k + 3) for k in range(14))
# x_minus_log1p_dense evaluates narrower dtypes in float64: x − log1p(x) for |x| ≥ 2⁻¹⁰
# (relative error ~2⁻⁵³·2/|x| ≤ 5e-13), x²(1/2 − x/3 + x²/4) below (truncation ~0.4|x|³ ≤ 4e-10).
_DIRECT_FROM = 2.0**-10
# e(y) = y²·Σ_j y^j/(j + 2)!: 16 terms reach 0.25^16 / 17! < 1e-24.
_E_COEFFS = tuple(1.0 / math.factorial(j + 2) for j in range(16))


def _horner(z: torch.Tensor, coeffs: tuple[float, ...]) -> torch.Tensor:
    acc = torch.full_like(z, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        acc = acc * z + c
    return acc


def _patch(out: torch.Tensor, small: torch.Tensor, series_values: torch.Tensor) -> torch.Tensor:
    return out.masked_scatter(small, series_values)


def x_minus_log1p(x: torch.Tensor) -> torch.Tensor:
    r"""g(x) = x − log(1 + x) for x > −1, accurate near 0 where it is ≈ x²/2.

    Args:
        x: tensor of any shape, all values > −1.

    Returns:
        Tensor of the same shape, ≥ 0.
    """
    out = x - torch.log1p(x)
    u = x / (2 + x)
    small = u.abs() < _SERIES_BELOW
    if bool(small.any()):
        us = u[small]
        u2 = us * us
        series = 2 * u2 / (1 - us) - 2 * u2 * us * _horner(u2, _G_COEFFS)
        out = _patch(out, small, series)
    return out.clamp_min(0)


def x_minus_log1p_dense(x: torch.Tensor) -> torch.Tensor:
    r"""g(x) = x − log(1 + x) for x > −1, as :func:`x_minus_log1p` but without its
    data-dependent gather, which costs more than the series on large arrays whose elements are
    mostly near 0 (the low-rank KL's (batch, d) ratios): the series is evaluated on every
    element (its argument clamped) and selected with ``where``.

    float64 as :func:`x_minus_log1p`. Narrower dtypes are evaluated in float64, directly for
    |x| ≥ 2⁻¹⁰ and by three terms of the Taylor series below, then rounded once.

    Args:
        x: tensor of any shape, all values > −1.

    Returns:
        Tensor of the same shape and dtype, ≥ 0.
    """
    if x.dtype != torch.float64:
        x64 = x.double()
        tiny = x64.square() * (0.5 - x64 * (1 / 3 - 0.25 * x64))
        out = torch.where(x64.abs() < _DIRECT_FROM, tiny, x64 - torch.log1p(x64))
        return out.to(x.dtype).clamp_min(0)
    u = x / (2 + x)
    us = u.clamp(-_SERIES_BELOW, _SERIES_BELOW)
    u2 = us * us
    series = 2 * u2 * (1 / (1 - us) - us * _horner(u2, _G_COEFFS))
    return torch.where(u.abs() < _SERIES_BELOW, series, x - torch.log1p(x)).clamp_min(0)


def expm1_minus_x(y: torch.Tensor) -> torch.Tensor:
    r"""e(y) = exp(y) − 1 − y, accurate near 0 where it is ≈ y²/2.

    Args:
        y: tensor of any shape.

    Returns:
        Tensor of the same shape, ≥ 0 (``inf`` where exp(y) overflows).
    """
    out = torch.expm1(y) - y
    small = y.abs() < _SERIES_BELOW
    if bool(small.any()):
        ys = y[small]
        out = _patch(out, small, ys * ys * _horner(ys, _E_COEFFS))
    return out.clamp_min(0)


def one_plus_x_log1p_minus_x(x: torch.Tensor) -> torch.Tensor:
    r"""h(x) = (1 + x)·log(1 + x) − x for x ≥ −1, accurate near 0 where it is ≈ x²/2.

    Near 0 it uses the identity h(x) = (1 + x)·g(−x / (1 + x)); elsewhere the direct formula,
    which has no cancellation there.

    Args:
        x: tensor of any shape, all values ≥ −1.

    Returns:
        Tensor of the same shape, ≥ 0.
    """
    out = torch.xlogy(1 + x, 1 + x) - x
    small = x.abs() < 0.5
    if bool(small.any()):
        xs = x[small]
        out = _patch(out, small, (1 + xs) * x_minus_log1p(-xs / (1 + xs)))
    return out.clamp_min(0)
