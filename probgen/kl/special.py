r"""Stable differences of log-gamma and digamma, the pieces the Gamma/Beta/Dirichlet KLs need.

Everything is written around Binet's function, the remainder of Stirling's formula,

.. math::

    \log\Gamma(x) = (x - \tfrac12)\log x - x + \tfrac12\log 2\pi + \varphi(x),
    \qquad \varphi(x) \sim \sum_{j \ge 1} \frac{B_{2j}}{2j(2j-1)}\, x^{1-2j},

and its Bregman divergence :math:`D_\varphi(x', x) = \varphi(x') - \varphi(x) -
\varphi'(x)(x' - x) \ge 0` (φ is convex: it is completely monotone). For large arguments the
asymptotic series is used with the difference taken analytically: with
:math:`t = (x' - x)/x` and :math:`w = x/x'`,

.. math::

    (1 + t)^{-n} - 1 + n t = t^2 \sum_{i=1}^{n} (n - i + 1)\, w^{i},

a sum of positive terms, so no cancellation at any :math:`t`. Small arguments are shifted up by
the recurrence :math:`\log\Gamma(x) = \log\Gamma(x + N) - \sum_{j<N} \log(x + j)`, whose Bregman
divergence is :math:`\sum_j g(\delta/(x + j))` with :math:`g(u) = u - \log(1 + u) \ge 0`.

No ``torch.lgamma``/``torch.digamma`` is called: the results are built from ``log1p`` and
rational functions only, which also keeps them fast. All functions are elementwise,
broadcasting, differentiable, and keep the dtype of their inputs. Derivations:
``docs/kl/gamma_beta.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import NamedTuple

import torch

from probgen.kl.stable import one_plus_x_log1p_minus_x, x_minus_log1p

__all__ = [
    "Selection",
    "binet_bregman",
    "digamma_diff",
    "fast_or_stable",
    "g_of",
    "gamma_shape_kl",
    "gather",
    "lgamma_bregman",
    "lgamma_diff",
    "working_dtype",
    "x_minus_log1p_ratio",
]

# B_{2j} / (2j (2j - 1)), j = 1..8: the coefficients of Binet's asymptotic series.
_BERNOULLI = (
    Fraction(1, 6),
    Fraction(-1, 30),
    Fraction(1, 42),
    Fraction(-1, 30),
    Fraction(5, 66),
    Fraction(-691, 2730),
    Fraction(7, 6),
    Fraction(-3617, 510),
)
_BINET = tuple(float(b / (2 * j * (2 * j - 1))) for j, b in enumerate(_BERNOULLI, start=1))

# (threshold X0 = shift N, number of series terms J) per dtype. The truncation error of the
# Bregman divergence of φ relative to t² is |c_{J+1}| X0^{-2J-1} (2J+1)(J+1): 1e-13 for float64
# (8, 7) and 2e-7 for float32 (5, 3), against a KL of at least t²/4.
_PLAN = {torch.float64: (8, 7), torch.float32: (5, 3)}
_LOG_2PI = 1.8378770664093453


def _plan(dtype: torch.dtype) -> tuple[int, int]:
    return _PLAN.get(dtype, _PLAN[torch.float32])


# A textbook KL (lgamma/digamma of the parameters, the terms added in the working dtype) has
# a rounding error of at most _ULPS · eps · M, with M the sum of the absolute values of its
# terms plus |Δ|·max(|ψ|, 1) for each ψ multiplied by a difference Δ (torch's digamma is
# accurate to ~7 ulps of max(|ψ|, 1): an absolute error near its root x ≈ 1.4616) and the
# rounding of each log. It is kept where that bound is below a quarter of the target of the
# output dtype: relative 1e-10 (float64); relative 1e-4, or absolute 1e-7 (float32).
_ULPS = 8
_TOLERANCE = {torch.float64: (2.5e-11, 0.0), torch.float32: (2.5e-5, 2.5e-8)}


class Selection(NamedTuple):
    """Batch elements picked by a boolean ``mask`` (at least 1-D), with their indices
    ``idx = mask.nonzero(as_tuple=True)`` computed once."""

    mask: torch.Tensor
    idx: tuple[torch.Tensor, ...]


def fast_or_stable(
    value: torch.Tensor,
    magnitude: torch.Tensor,
    stable: Callable[[Selection], torch.Tensor],
    dtype: torch.dtype,
    ulps: float = _ULPS,
) -> torch.Tensor:
    """Keep a textbook KL where its rounding error is harmless; recompute the rest stably.

    Args:
        value: the KL from the textbook formula, in the working dtype, any shape.
        magnitude: M of that shape (see above), without autograd history; it is overwritten.
        stable: maps a :class:`Selection` of elements of that shape (a 0-dim ``value`` is
            seen as shape ``(1,)``) to their stable KL (a 1-D tensor in mask order; use
            :func:`gather`); called only if some element needs it.
        dtype: the dtype of the result, whose accuracy target decides what is kept.
        ulps: the rounding bound's multiple of eps·M; 8 covers torch's digamma, a formula
            without digamma may pass its own (smaller) count.

    Returns:
        Tensor of ``value``'s shape in ``dtype``, ≥ 0: ``value`` where
        ``ulps·eps·M ≤ max(rtol/4 · value, atol/4)``, the stable values elsewhere.
    """
    rtol, atol = _TOLERANCE.get(dtype, _TOLERANCE[torch.float32])
    shape = value.shape
    if value.dim() == 0:
        value, magnitude = value.reshape(1), magnitude.reshape(1)
    with torch.no_grad():
        bound = magnitude.mul_(ulps * torch.finfo(value.dtype).eps)
        threshold = value.detach() * rtol
        if atol:
            threshold.clamp_min_(atol)
        threshold.clamp_max_(torch.finfo(value.dtype).max)  # an infinite value is redone
        # > 0, or NaN, where the value is not kept; one reduction spares the mask and its
        # indices when every element is kept.
        excess = bound.sub_(threshold)
        idx = None
        if value.numel() and not bool(excess.max() <= 0):
            redo = torch.le(excess, 0).logical_not_()
            idx = redo.nonzero(as_tuple=True)
    if idx is not None:
        values = stable(Selection(redo, idx)).to(value.dtype)
        value = value.index_put(idx, values)
    if value.dtype != dtype:
        value = value.to(dtype)
    return value.clamp_min_(0).reshape(shape)


def gather(
    selection: torch.Tensor | Selection, *tensors: torch.Tensor, event_dims: int = 0
) -> tuple[torch.Tensor, ...]:
    """The elements of each tensor at the selected batch positions, in mask order, with one
    ``nonzero`` for all of them (boolean indexing repeats it per tensor).

    Args:
        selection: boolean mask of the batch shape, or a :class:`Selection`.
        tensors: tensors broadcastable to the batch shape plus their last ``event_dims``
            dimensions.
        event_dims: number of trailing event dimensions of every tensor.

    Returns:
        One tensor per input, of shape ``(n, *event)`` with n the number of selected elements.
    """
    if isinstance(selection, Selection):
        mask, idx = selection
    else:
        mask = selection if selection.dim() else selection.reshape(1)  # scalar batch: (1,)
        idx = mask.nonzero(as_tuple=True)
    out = []
    for x in tensors:
        event = x.shape[x.dim() - event_dims :] if event_dims else ()
        out.append(x.expand(*mask.shape, *event)[idx])
    return tuple(out)


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 for the textbook formula of float32 input (so that it is trusted almost
    everywhere), the input dtype otherwise."""
    return torch.float64 if dtype == torch.float32 else dtype


def x_minus_log1p_ratio(t: torch.Tensor, log_ratio: torch.Tensor) -> torch.Tensor:
    r"""g(t) = t − log(1 + t), where 1 + t is a ratio r whose logarithm is also given.

    Near 0 it is :func:`probgen.kl.stable.x_minus_log1p` of ``t``; for ``t < −1/2`` it is
    ``t − log_ratio``, so that a ratio r = x'/x far below 1 (where 1 + t would round to 0)
    keeps its accuracy.

    Args:
        t: r − 1, any shape, > −1.
        log_ratio: log r, same shape.

    Returns:
        Tensor of the same shape, ≥ 0.
    """
    far = t < -0.5
    near = x_minus_log1p(torch.where(far, torch.zeros_like(t), t))
    return torch.where(far, t - log_ratio, near)


def g_of(new: torch.Tensor, old: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """g(δ/x) = δ/x − log(x'/x) for x' = new, x = old, δ = delta: accurate also for x' ≪ x.

    Args:
        new, old, delta: broadcastable tensors, new, old > 0, delta = new − old.

    Returns:
        Tensor of the broadcast shape, ≥ 0.
    """
    t = delta / old
    return x_minus_log1p_ratio(t, torch.log(new) - torch.log(old))


def _binet_bregman_asymptotic(
    y: torch.Tensor, yp: torch.Tensor, delta: torch.Tensor, terms: int
) -> torch.Tensor:
    """D_φ(y', y) by the asymptotic series, for y, y' = y + δ both large."""
    t = delta / y
    near = t >= -0.5
    w = 1.0 / (1.0 + torch.where(near, t, torch.zeros_like(t)))  # in (0, 2]
    # S_n(w) = Σ_{i=1..n} (n − i + 1) w^i by S_n = S_{n−1} + G_n, G_n = G_{n−1} + w^n.
    power, partial, s = w, w, w
    sums = [s]
    for n in range(2, 2 * terms):
        power = power * w
        partial = partial + power
        s = s + partial
        if n % 2 == 1:
            sums.append(s)
    z = 1.0 / (y * y)
    acc = _BINET[terms - 1] * sums[terms - 1]
    for j in range(terms - 2, -1, -1):
        acc = acc * z + _BINET[j] * sums[j]
    out = t * t * acc / y
    if bool((~near).any()):
        # t < −1/2: no cancellation, sum the powers of y' = y + δ directly.
        ys, ts, yps = y[~near], t[~near], yp[~near]
        direct = torch.zeros_like(ys)
        for j in range(terms):
            n = 2 * j + 1
            direct = direct + _BINET[j] * (yps.pow(-n) - ys.pow(-n) * (1 - n * ts))
        out = out.masked_scatter(~near, direct)
    return out


def binet_bregman(
    x: torch.Tensor, x_prime: torch.Tensor, delta: torch.Tensor | None = None
) -> torch.Tensor:
    r"""Bregman divergence of Binet's function, D_φ(x', x) = φ(x') − φ(x) − φ'(x)·δ ≥ 0, δ = x' − x.

    With :math:`y = x + N`: :math:`D_\varphi(x+\delta, x) = D_\varphi(y+\delta, y) + \sum_{j<N}
    g(\delta/(x+j)) + y\,h(\delta/y) + \tfrac12 g(\delta/y) - x\,h(\delta/x) - \tfrac12
    g(\delta/x)`, used where min(x, x + δ) < N; the asymptotic series elsewhere.

    Args:
        x: base point, > 0.
        x_prime: the other point, > 0, broadcastable with ``x``.
        delta: x' − x when the caller knows it more accurately than the rounded difference
            (e.g. a sum of differences); by default x' − x, exact when the two are within a
            factor 2 (Sterbenz).

    Returns:
        Tensor of the broadcast shape, ≥ 0. Reference: ``docs/kl/gamma_beta.md``.
    """
    if delta is None:
        x, x_prime = torch.broadcast_tensors(x, x_prime)
        delta = x_prime - x
    else:
        x, x_prime, delta = torch.broadcast_tensors(x, x_prime, delta)
    shift, terms = _plan(x.dtype)
    small = torch.minimum(x, x_prime) < shift
    any_small = bool(small.any())
    y, yp = (x + shift, x_prime + shift) if any_small else (x, x_prime)
    if any_small:
        y, yp = torch.where(small, y, x), torch.where(small, yp, x_prime)
    out = _binet_bregman_asymptotic(y, yp, delta, terms)
    if any_small:
        xs, xps, ds, ys = x[small], x_prime[small], delta[small], y[small]
        j = torch.arange(shift, dtype=x.dtype, device=x.device)
        base, base_p = xs.unsqueeze(-1) + j, xps.unsqueeze(-1) + j
        recurrence = g_of(base_p, base, ds.unsqueeze(-1)).sum(-1)
        ty, tx = ds / ys, ds / xs
        stirling_y = ys * one_plus_x_log1p_minus_x(ty) + 0.5 * g_of(yp[small], ys, ds)
        stirling_x = xs * one_plus_x_log1p_minus_x(tx) + 0.5 * g_of(xps, xs, ds)
        shifted = out[small] + recurrence + stirling_y - stirling_x
        # x' < x/2: the shifted terms above grow like x while the result is O(1); there
        # φ(x') − φ(x) − φ'(x)·δ has no cancellation (φ is convex and decreasing).
        far = tx < -0.5
        if bool(far.any()):
            direct = _binet(xps[far]) - _binet(xs[far]) - _binet_prime(xs[far]) * ds[far]
            shifted = shifted.masked_scatter(far, direct)
        out = out.masked_scatter(small, shifted)
    return out.clamp_min(0)


def _binet(x: torch.Tensor) -> torch.Tensor:
    """φ(x) = log Γ(x) − (x − ½)log x + x − ½log 2π, evaluated in float64."""
    x64 = x.double()
    small = x64 < _PLAN[torch.float64][0]
    z = 1.0 / (x64 * x64)
    acc = torch.full_like(x64, _BINET[-1])
    for c in reversed(_BINET[:-1]):
        acc = acc * z + c
    series = acc / x64
    direct = torch.lgamma(x64) - (x64 - 0.5) * torch.log(x64) + x64 - 0.5 * _LOG_2PI
    return torch.where(small, direct, series).to(x.dtype)


def _binet_prime(x: torch.Tensor) -> torch.Tensor:
    """φ'(x) = ψ(x) − log x + 1/(2x), evaluated in float64."""
    x64 = x.double()
    small = x64 < _PLAN[torch.float64][0]
    z = 1.0 / (x64 * x64)
    acc = torch.full_like(x64, -(2 * len(_BINET) - 1) * _BINET[-1])
    for j in range(len(_BINET) - 2, -1, -1):
        acc = acc * z - (2 * j + 1) * _BINET[j]
    series = acc * z
    direct = torch.digamma(x64) - torch.log(x64) + 0.5 / x64
    return torch.where(small, direct, series).to(x.dtype)


def lgamma_bregman(x: torch.Tensor, x_prime: torch.Tensor) -> torch.Tensor:
    r"""log Γ(x') − log Γ(x) − δ·ψ(x) ≥ 0, δ = x' − x (Bregman divergence of log Γ), stably.

    .. math:: x\,h(t) + \tfrac12 g(t) + D_\varphi(x + \delta, x), \qquad t = \delta / x,

    with h(t) = (1 + t)log(1 + t) − t, g(t) = t − log(1 + t); every term is ≥ 0.

    Args:
        x, x_prime: > 0, broadcastable.

    Returns:
        Tensor of the broadcast shape, ≥ 0.
    """
    x, x_prime = torch.broadcast_tensors(x, x_prime)
    delta = x_prime - x
    t = delta / x
    h = x * one_plus_x_log1p_minus_x(t)
    return h + 0.5 * g_of(x_prime, x, delta) + binet_bregman(x, x_prime)


def gamma_shape_kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""KL(Gamma(a, rate=a) ‖ Gamma(b, rate=b)): the shape part of the Gamma KL.

    .. math::

        (a - b)\psi(a) - \log\Gamma(a) + \log\Gamma(b) - b\log\frac ba + b - a
        = \tfrac12 g(\delta/a) + D_\varphi(b, a) \;\ge 0.

    Args:
        a, b: > 0, broadcastable.

    Returns:
        Tensor of the broadcast shape, ≥ 0.
    """
    a, b = torch.broadcast_tensors(a, b)
    return 0.5 * g_of(b, a, b - a) + binet_bregman(a, b)


def lgamma_diff(x: torch.Tensor, x_prime: torch.Tensor) -> torch.Tensor:
    r"""log Γ(x') − log Γ(x), accurate for close arguments (δ = x' − x) and for large ones.

    .. math::

        -\sum_{j<N}\log(1 + \delta/(x + j)) + (y - \tfrac12)\log(1 + \delta/y)
        + \delta\log(y + \delta) - \delta + \varphi(y + \delta) - \varphi(y),

    with y = x + N (N = 0 where x, x + δ are already large), and the φ difference taken
    termwise as :math:`c_j y^{1-2j}((1+t)^{1-2j} - 1)`, with
    :math:`(1+t)^{-n} - 1 = -t\sum_{i\le n} w^i`.

    Args:
        x, x_prime: > 0, broadcastable.

    Returns:
        Tensor of the broadcast shape.
    """
    x, step, sign, shift, terms, small, y = _shifted(x, x_prime)
    out = _lgamma_diff_asymptotic(y, step, terms)
    j = torch.arange(shift, dtype=x.dtype, device=x.device)
    logs = torch.log1p(step.unsqueeze(-1) / (x.unsqueeze(-1) + j)).sum(-1)
    return sign * torch.where(small, out - logs, out)


def _shifted(
    x: torch.Tensor, x_prime: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, int, torch.Tensor, torch.Tensor]:
    """The common set-up of the differences f(x') − f(x) = sign · (f(base + |δ|) − f(base)).

    Returns (base, |δ|, sign, N, terms, small, y): the step goes up from the smaller argument
    (so that t = |δ|/y ≥ 0 and w = 1/(1 + t) ≤ 1), and y = base + N where base < N (small)."""
    x, x_prime = torch.broadcast_tensors(x, x_prime)
    delta = x_prime - x
    negative = delta < 0
    base = torch.where(negative, x_prime, x)
    sign = torch.where(negative, -torch.ones_like(x), torch.ones_like(x))
    shift, terms = _plan(base.dtype)
    small = base < shift
    y = base + small.to(base.dtype) * shift
    return base, delta.abs(), sign, shift, terms, small, y


def _lgamma_diff_asymptotic(y: torch.Tensor, delta: torch.Tensor, terms: int) -> torch.Tensor:
    t = delta / y
    l1p = torch.log1p(t)
    out = (y - 0.5) * l1p + delta * torch.log(y + delta) - delta
    w = 1.0 / (1.0 + t)
    power, geometric, acc_terms = w, w, [w]
    for n in range(2, 2 * terms):
        power = power * w
        geometric = geometric + power
        if n % 2 == 1:
            acc_terms.append(geometric)
    z = 1.0 / (y * y)
    acc = _BINET[terms - 1] * acc_terms[terms - 1]
    for k in range(terms - 2, -1, -1):
        acc = acc * z + _BINET[k] * acc_terms[k]
    return out - t * acc / y


def digamma_diff(x: torch.Tensor, x_prime: torch.Tensor) -> torch.Tensor:
    r"""ψ(x') − ψ(x), accurate for close arguments (δ = x' − x) and for large ones.

    .. math::

        \sum_{j<N} \frac{\delta}{(x+j)(x+j+\delta)} + \log(1+t) + \frac{t}{2(y+\delta)}
        - \sum_k \frac{B_{2k}}{2k}\left((y+\delta)^{-2k} - y^{-2k}\right),

    with y = x + N, t = δ/y, and :math:`(1+t)^{-m} - 1 = -t\sum_{i\le m} w^i`, w = 1/(1 + t).

    Args:
        x, x_prime: > 0, broadcastable.

    Returns:
        Tensor of the broadcast shape.
    """
    x, step, sign, shift, terms, small, y = _shifted(x, x_prime)
    t = step / y
    w = 1.0 / (1.0 + t)
    out = torch.log1p(t) + 0.5 * t / (y + step)
    power, geometric = torch.ones_like(w), torch.zeros_like(w)
    z = 1.0 / (y * y)
    zk = z
    for k in range(1, terms + 1):
        for _ in range(2):
            power = power * w
            geometric = geometric + power
        # (y + δ)^{-2k} − y^{-2k} = −t·y^{-2k}·Σ_{i=1..2k} w^i
        out = out + float(_BERNOULLI[k - 1] / (2 * k)) * t * zk * geometric
        zk = zk * z
    j = torch.arange(shift, dtype=x.dtype, device=x.device)
    xj = x.unsqueeze(-1) + j
    rec = (step.unsqueeze(-1) / (xj * (xj + step.unsqueeze(-1)))).sum(-1)
    return sign * torch.where(small, out + rec, out)
