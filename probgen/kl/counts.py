r"""KL(p ‖ q) between laws of counts: Poisson, Geometric, Binomial.

All three reduce to the nonnegative term t(x, y) = x·log(x/y) − x + y
(:func:`probgen.kl.discrete_terms.poisson_term`) and the two-point KL
(:func:`probgen.kl.bernoulli.binary_kl`):

* Poisson: KL = t(λ_p, λ_q) = λ_q·h(λ_p/λ_q − 1), h(x) = (1 + x)·log1p(x) − x;
* Geometric (pmf (1 − p)^k·p, k ≥ 0): KL = KL_Bern(p ‖ q)/p;
* Binomial, equal total counts n: KL = n·KL_Bern(p ‖ q);
* Binomial, total counts n ≠ m: the exact finite sum over k = 0…n (no closed form).
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Binomial, Distribution, Geometric, Poisson

from probgen.kl.bernoulli import binary_kl, given_parameter, two_point
from probgen.kl.discrete_terms import grad_needed, poisson_term_of_rates
from probgen.kl.registry import register_kl

__all__ = ["binomial_kl_sum"]


@register_kl(Poisson, Poisson)
def _kl_poisson_poisson(p: Poisson, q: Poisson) -> torch.Tensor:
    r"""Batchwise KL(p ‖ q) for Poisson laws of rates λ_p, λ_q.

    .. math::  KL = λ_p\log\frac{λ_p}{λ_q} - λ_p + λ_q = λ_q\,h\Bigl(\frac{λ_p - λ_q}{λ_q}\Bigr),

    evaluated from the exact difference λ_p − λ_q (series where the rates are close). λ_p = 0
    gives λ_q; λ_q = 0 < λ_p gives +inf.

    Returns:
        Tensor of shape ``broadcast(p.batch_shape, q.batch_shape)``. Reference:
        ``docs/kl/discrete.md``.
    """
    return poisson_term_of_rates(p.rate, q.rate)


@register_kl(Geometric, Geometric)
def _kl_geometric_geometric(p: Geometric, q: Geometric) -> torch.Tensor:
    r"""Batchwise KL(p ‖ q) for Geometric laws (pmf (1 − p)^k·p on k = 0, 1, …).

    .. math::  KL = \log\frac{p}{q} + \frac{1 - p}{p}\log\frac{1 - p}{1 - q}
                  = \frac{KL_{Bern}(p \,\|\, q)}{p},

    with the two-point KL evaluated stably on logits or probabilities (whichever was given).

    Returns:
        Tensor of shape ``broadcast(p.batch_shape, q.batch_shape)``; +inf where q = 1 > p.
        Reference: ``docs/kl/discrete.md``.
    """
    kl = binary_kl(p, q)
    probs = p.probs if given_parameter(p) == "probs" else torch.sigmoid(p.logits)
    return kl / probs if grad_needed(kl) else kl.div_(probs)


def _support(probs: torch.Tensor, comp: torch.Tensor, n: torch.Tensor) -> tuple:
    """Lowest and highest k with positive Binomial(n, probs) mass."""
    low = torch.where(comp == 0, n, torch.zeros_like(n))
    high = torch.where(probs == 0, torch.zeros_like(n), n)
    return low, high


def _log_pmf(k, n, log_p, log_pc):
    """log Binomial(n, p) pmf at k ≤ n (elementwise, all finite)."""
    return (
        torch.lgamma(n + 1)
        - torch.lgamma(k + 1)
        - torch.lgamma(n - k + 1)
        + k * log_p
        + (n - k) * log_pc
    )


def _log_probs(d: Distribution) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(p, 1 − p, log p, log(1 − p)) in float64, logs finite (probabilities 0, 1 floored)."""
    p, pc, logits = two_point(d)
    p, pc = p.double(), pc.double()
    if logits is not None:
        logits = logits.double()
        return p, pc, -torch.nn.functional.softplus(-logits), -torch.nn.functional.softplus(logits)
    tiny = torch.finfo(torch.float64).tiny
    return p, pc, p.clamp_min(tiny).log(), pc.clamp_min(tiny).log()


def binomial_kl_sum(p: Binomial, q: Binomial) -> torch.Tensor:
    r"""KL(Binomial(n, p) ‖ Binomial(m, q)) by the exact finite sum, any total counts.

    .. math::  KL = \sum_{k=0}^{n} b_{n,p}(k)\,\bigl[\log b_{n,p}(k) - \log b_{m,q}(k)\bigr],
        \quad \log b_{n,p}(k) = \log\binom{n}{k} + k\log p + (n - k)\log(1 - p).

    It is finite iff q puts mass on every k where p does: the support of Binomial(n, p) is
    {0…n} ({0} if p = 0, {n} if p = 1), so for 0 < p < 1 this means n ≤ m (and 0 < q < 1 when
    n ≥ 1). No closed form exists; the sum is vectorized over the batch on the grid 0…max n, in
    float64 (log-binomial coefficients of large n would lose all digits in float32).

    Cost: O(batch · max n) time and memory. Absolute error ~ eps_64 · n·log n (the size of the
    log-binomial coefficients).

    Returns:
        Tensor of shape ``broadcast(p.batch_shape, q.batch_shape)`` in p's dtype.
    """
    shape = torch.broadcast_shapes(p.batch_shape, q.batch_shape)
    p_, pc, lp, lpc = (t.expand(shape).reshape(-1, 1) for t in _log_probs(p))
    q_, qc, lq, lqc = (t.expand(shape).reshape(-1, 1) for t in _log_probs(q))
    n = p.total_count.double().expand(shape).reshape(-1, 1)
    m = q.total_count.double().expand(shape).reshape(-1, 1)
    top = int(n.max().item()) if n.numel() else 0
    k = torch.arange(top + 1, dtype=torch.float64, device=n.device)
    kp, kq = torch.minimum(k, n), torch.minimum(k, m)  # keeps every log finite
    log_w = _log_pmf(kp, n, lp, lpc)
    w = torch.exp(log_w) * (k <= n)
    log_r = log_w - _log_pmf(kq, m, lq, lqc)
    kl = (w * log_r).sum(-1).clamp_min(0)

    low_p, high_p = _support(p_, pc, n)
    low_q, high_q = _support(q_, qc, m)
    infinite = ((low_p < low_q) | (high_p > high_q)).reshape(-1)
    kl = torch.where(infinite, torch.full_like(kl, math.inf), kl)
    dtype = p.total_count.dtype
    return kl.reshape(shape).to(dtype)


@register_kl(Binomial, Binomial)
def _kl_binomial_binomial(p: Binomial, q: Binomial) -> torch.Tensor:
    r"""Batchwise KL(p ‖ q) for Binomial laws, equal or different total counts.

    Equal total counts n (the usual case):

    .. math::  KL = n\Bigl[p\log\frac{p}{q} + (1 - p)\log\frac{1 - p}{1 - q}\Bigr],

    with the two-point KL evaluated stably on logits or probabilities (never clamped). Elements
    whose total counts differ use :func:`binomial_kl_sum` (an exact finite sum, cost
    O(#such elements · max n)); it is +inf where p's support is not inside q's (e.g. n > m).

    Returns:
        Tensor of shape ``broadcast(p.batch_shape, q.batch_shape)``. Reference:
        ``docs/kl/discrete.md``.
    """
    n, m = p.total_count, q.total_count
    n_, m_ = _compact(n), _compact(m)  # total counts are usually one number broadcast
    kl = binary_kl(p, q)
    if bool((n_ == 0).any()):
        kl = torch.where(n > 0, n * kl, torch.zeros_like(kl))
    else:
        kl = n * kl if grad_needed(kl) else kl.mul_(n)
    if not bool((n_ != m_).any()):
        return kl
    differ = n != m
    shape = kl.shape
    differ = differ.expand(shape)
    idx = differ.reshape(-1).nonzero().squeeze(-1)
    p_sub = _take(p, shape, idx)
    q_sub = _take(q, shape, idx)
    values = binomial_kl_sum(p_sub, q_sub)
    return kl.reshape(-1).index_put((idx,), values).reshape(shape)


def _compact(t: torch.Tensor) -> torch.Tensor:
    """The values of ``t`` without its broadcast (stride-0) dimensions, kept as size 1."""
    return t[tuple(slice(0, 1) if st == 0 else slice(None) for st in t.stride())]


def _take(d: Binomial, shape: torch.Size, idx: torch.Tensor) -> Binomial:
    """The Binomial of the flattened batch elements ``idx`` (same parametrisation as ``d``)."""
    count = d.total_count.expand(shape).reshape(-1)[idx]
    if given_parameter(d) == "logits":
        return Binomial(count, logits=d.logits.expand(shape).reshape(-1)[idx], validate_args=False)
    return Binomial(count, probs=d.probs.expand(shape).reshape(-1)[idx], validate_args=False)
