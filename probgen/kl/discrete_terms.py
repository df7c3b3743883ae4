r"""The elementwise term that the discrete KL closed forms are sums of.

Every KL between Bernoulli, Binomial (equal counts), Geometric, Categorical and Poisson laws is a
sum of terms

.. math::

    t(x, y) = x \log\frac{x}{y} - x + y \;\ge\; 0, \qquad x, y \ge 0,

(the KL between Poisson laws of rates x and y; 0·log 0 = 0, and t = +∞ when y = 0 < x). With
s = x + y and u = (x − y)/s ∈ [−1, 1] it is t = s·φ(u), where

.. math::

    φ(u) = (1 + u)\,\operatorname{atanh}(u) - u
         = u^2 \Bigl(1 + u(1 + u)\sum_{k \ge 0} \frac{u^{2k}}{2k + 3}\Bigr).

The direct formula loses about log2(1/|u|) bits to cancellation, so for |u| below a threshold
the series is used (a handful of terms suffices there); the difference x − y is passed in by
the caller, who can compute it exactly (Sterbenz) or from logits, instead of recomputing it
from rounded x and y.
"""

from __future__ import annotations

import torch

__all__ = ["poisson_term", "poisson_term_su"]

# (|u| below which the series is used, coefficients 1/3, 1/5, …): the truncation error is below
# |u|^(2m+1)/(2m+3) relative, and the direct formula's rounding error ~2·eps/|u| above it.
_SERIES = {
    torch.float64: (0.01, tuple(1.0 / (2 * k + 3) for k in range(4))),
    torch.float32: (0.05, tuple(1.0 / (2 * k + 3) for k in range(3))),
}


def _phi_series(u: torch.Tensor, coeffs: tuple[float, ...]) -> torch.Tensor:
    v = u * u
    acc = coeffs[-1] * v + coeffs[-2]
    for c in reversed(coeffs[:-2]):
        acc = acc * v + c
    return v + v * (u + v) * acc


def poisson_term_su(
    x: torch.Tensor, y: torch.Tensor, s: torch.Tensor, u: torch.Tensor
) -> torch.Tensor:
    """t(x, y) given s = x + y and u = (x − y)/s (0 where s = 0); see :func:`poisson_term`."""
    threshold, coeffs = _SERIES.get(u.dtype, _SERIES[torch.float64])
    small = u.abs() < threshold
    if bool(small.all()):
        return s * _phi_series(u, coeffs)
    direct = x * torch.log((x / y).clamp_min(torch.finfo(u.dtype).tiny)) - s * u
    if not bool(small.any()):
        return direct
    return torch.where(small, s * _phi_series(u, coeffs), direct)


def poisson_term(x: torch.Tensor, y: torch.Tensor, diff: torch.Tensor) -> torch.Tensor:
    r"""t(x, y) = x·log(x/y) − x + y ≥ 0, given ``diff`` = x − y computed by the caller.

    Args:
        x, y: broadcastable tensors of nonnegative values (x = y = 0 gives 0; y = 0 < x gives
            +inf).
        diff: x − y, as accurate as the caller can make it (it sets the accuracy when x ≈ y).

    Returns:
        Tensor of the broadcast shape, ≥ 0, relative error a few ulps where x ≈ y and
        ~2·eps/|u| (u = diff/(x + y)) elsewhere; y below the smallest normal number (a
        subnormal y) may overflow x/y to +inf.
    """
    s = x + y
    u = diff / s.clamp_min(torch.finfo(s.dtype).tiny)  # 0 where x = y = 0
    return poisson_term_su(x, y, s, u)
