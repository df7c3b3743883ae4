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

**Fast path.** A sum of such terms whose masses add up to about 1 (Bernoulli, Categorical) is,
written directly, Σ x·log(x/y) (the linear parts cancel), with an absolute rounding error of a
few eps whatever the parameters (measured: ≤ 1.5·eps in float64 and ≤ 3·eps in float32 over
probabilities down to 1e-12 from 0 and 1, on probabilities or logits). Where that sum is at
least :data:`DIRECT_ABOVE` (1e-4 in float64, 1e-2 in float32) its relative error is at most
~3e-12 resp. ~2e-5, so the closed forms evaluate the direct sum everywhere (one log per term,
no branch) and re-evaluate term by term only the elements below the threshold
(:func:`refine`: a cheap min-reduction first, then a gather of just those elements).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = [
    "DIRECT_ABOVE",
    "direct_above",
    "grad_needed",
    "poisson_term",
    "poisson_term_of_rates",
    "poisson_term_su",
    "refine",
    "xlog_ratio",
]

# Value of a direct sum Σ x·log(x/y) (total mass ~1) above which its few-eps absolute error is
# within the accuracy target with a wide margin (relative error ≤ 3·eps/threshold).
DIRECT_ABOVE = {torch.float64: 1e-4, torch.float32: 1e-2}


def direct_above(dtype: torch.dtype) -> float:
    """:data:`DIRECT_ABOVE` for ``dtype``; +inf (always term by term) for other dtypes."""
    return DIRECT_ABOVE.get(dtype, math.inf)


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


def _series_term(s: torch.Tensor, u: torch.Tensor, coeffs: tuple[float, ...]) -> torch.Tensor:
    return s * _phi_series(u, coeffs)


def poisson_term_su(
    x: torch.Tensor, y: torch.Tensor, s: torch.Tensor, u: torch.Tensor
) -> torch.Tensor:
    """t(x, y) given s = x + y and u = (x − y)/s (0 where s = 0); see :func:`poisson_term`.

    The series is evaluated only on the elements with |u| below the threshold (all at once when
    every element has it), the direct form only when some element does not.
    """
    threshold, coeffs = _SERIES.get(u.dtype, _SERIES[torch.float64])
    au = u.abs()
    if au.numel() and bool(au.amax() < threshold):
        return _series_term(s, u, coeffs)
    inplace = not grad_needed(x, y, s, u)
    direct = xlog_ratio(x, y, inplace)
    direct = direct.addcmul_(s, u, value=-1) if inplace else direct - s * u
    return refine(direct, au, threshold, lambda s_, u_: _series_term(s_, u_, coeffs), s, u)


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


# |u| below which poisson_term_of_rates leaves the direct form: its relative error is at most
# 1.45·eps/|u| (measured at 2e6 points, rates 1e-6 … 1e6, 1e-4 ≤ |u| ≤ 0.14), so ≤ 3.5e-12 in
# float64 and ≤ 1.8e-5 in float32 above these.
_RATES_DIRECT_ABOVE = {torch.float64: 1e-4, torch.float32: 0.01}


def poisson_term_of_rates(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """t(x, y) for rates x, y whose difference x − y is formed here (exact when they are close).

    Same result as :func:`poisson_term` with fewer passes: the direct form x·log1p(δ/y) − δ
    (δ = x − y; log1p's argument floored at −1 + eps, which costs at most ~16·eps·y where
    t ≥ 0.15·y) everywhere, and :func:`poisson_term` on the elements with |u| below
    :data:`_RATES_DIRECT_ABOVE` (u = δ/(x + y) = tanh(log(x/y)/2), so |u| < τ ⇔
    |log(x/y)| < 2·atanh(τ)), where it loses digits.

    Args:
        x, y: broadcastable tensors of nonnegative values.

    Returns:
        Tensor of the broadcast shape, ≥ 0 (see :func:`poisson_term`).
    """
    diff = x - y
    dtype = diff.dtype
    threshold = 2 * math.atanh(_RATES_DIRECT_ABOVE.get(dtype, 0.1))
    floor = -1 + torch.finfo(dtype).eps
    t = diff / y
    if grad_needed(x, y):
        log_r = torch.log1p(t.clamp_min(floor))
        score, direct = log_r.detach().abs(), x * log_r - diff
    else:
        log_r = t.clamp_min_(floor).log1p_()
        score = log_r.abs()  # NaN where x = y = 0: recomputed by poisson_term (0)
        direct = log_r.mul_(x).sub_(diff)
    return refine(direct, score, threshold, poisson_term, x, y, diff)


def grad_needed(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd records operations on any of ``tensors`` (if not, temporaries may be
    overwritten in place)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def xlog_ratio(x: torch.Tensor, y: torch.Tensor, inplace: bool) -> torch.Tensor:
    """x·log(x/y) elementwise (0 where x = 0 < y; +inf where y = 0 < x; NaN where x = y = 0),
    with one temporary when ``inplace`` (no autograd)."""
    r = x / y
    if inplace:
        return r.clamp_min_(torch.finfo(r.dtype).tiny).log_().mul_(x)
    return x * r.clamp_min(torch.finfo(r.dtype).tiny).log()


def _gather(
    a: torch.Tensor | None, shape: torch.Size, idx: tuple[torch.Tensor, ...], event_dims: int
) -> torch.Tensor | None:
    if a is None:
        return None
    event = a.shape[a.dim() - event_dims :] if event_dims else ()
    return a.expand(*shape, *event)[idx]


def refine(
    out: torch.Tensor,
    score: torch.Tensor,
    threshold: float,
    careful: Callable[..., torch.Tensor],
    *args: torch.Tensor | None,
    event_dims: int = 0,
) -> torch.Tensor:
    """``out`` with the elements where ``score < threshold`` (or NaN) replaced by ``careful``.

    ``careful(*args)`` must compute the same quantity elementwise over the batch: ``args``
    broadcast to ``out.shape`` plus their last ``event_dims`` dimensions; ``None`` arguments are
    passed through. It is called on the elements that need it only (gathered), on all of them
    at once when no element can keep its direct value (or a score is NaN), and not at all when
    none needs it, which costs one min-reduction of ``score``.
    """
    if out.numel() == 0 or bool(score.amin() >= threshold):
        return out
    if not bool(score.amax() >= threshold):
        return careful(*args).expand(out.shape)
    idx = (~(score >= threshold)).nonzero(as_tuple=True)
    values = careful(*(_gather(a, out.shape, idx, event_dims) for a in args))
    if grad_needed(out, values):
        return out.index_put(idx, values)
    return out.index_put_(idx, values)
