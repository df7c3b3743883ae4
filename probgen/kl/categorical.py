r"""KL(p ‖ q) between Categorical and OneHotCategorical laws over K classes.

A Categorical over K classes and a OneHotCategorical over K classes describe the same law (one
returns the index, the other its one-hot vector), so all four combinations share one formula:

.. math::

    KL = \sum_i p_i\log\frac{p_i}{q_i}
       = \frac{1}{P}\Bigl[\sum_i t(p_i, q_i) - t(P, Q)\Bigr],
    \qquad t(x, y) = x\log\frac{x}{y} - x + y \ge 0,

where p_i, q_i are the stored probabilities and P = Σ p_i, Q = Σ q_i (1 up to rounding: the
second term makes the result exact for the vectors as stored, and it is ≥ 0 by Jensen). The
differences p_i − q_i are exact when probabilities were given, and computed from the logit
difference d_i = a_i − b_i when logits were given:

.. math::  \frac{p_i - q_i}{p_i + q_i} = \tanh\frac{d_i}{2}.

+inf exactly where some q_i = 0 < p_i.

Fast path: the direct sum KL = Σ_i p_i·ℓ_i / P + log(Q/P) (ℓ_i = a_i − b_i, or log(p_i/q_i))
has an absolute error of a few eps·(1 + Σ|p_i·ℓ_i|/P); rows where KL ≥
:data:`probgen.kl.discrete_terms.DIRECT_ABOVE`·(1 + Σ|p_i·ℓ_i|/P) keep it, the others (and
those where it is not finite) are evaluated term by term as above.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Categorical, Distribution, OneHotCategorical

from probgen.kl.bernoulli import given_parameter
from probgen.kl.discrete_terms import (
    direct_above,
    grad_needed,
    poisson_term,
    poisson_term_su,
    refine,
)
from probgen.kl.registry import register_kl

__all__ = ["categorical_kl"]


def _categorical(d: Distribution) -> Categorical:
    return d._categorical if isinstance(d, OneHotCategorical) else d


def _probs_and_logits(d: Categorical) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(probabilities, logits or ``None``) from the parameter ``d`` was given. For logits, the
    probabilities are exp(logits) (torch normalizes the logits), or softmax(logits) where torch
    has already computed and cached ``d.probs``: the two agree to a few ulps, and every use of
    them below is accurate to a few ulps relative to such a perturbation."""
    if given_parameter(d) == "logits":
        logits = d.logits
        cached = d.__dict__.get("probs")
        return (torch.exp(logits) if cached is None else cached), logits
    return d.probs, None


def categorical_kl(p: Distribution, q: Distribution) -> torch.Tensor:
    r"""Batchwise KL(p ‖ q) for Categorical or OneHotCategorical laws over the same K classes.

    .. math::  KL = \sum_{i=1}^{K} p_i \log\frac{p_i}{q_i},

    evaluated as in the module docstring: a sum of nonnegative terms, on logits when both
    distributions were given logits, on probabilities (never clamped) otherwise.

    Args:
        p, q: Categorical or OneHotCategorical, any mix, with the same number of classes K.

    Returns:
        Tensor of shape ``broadcast(p.batch_shape, q.batch_shape)``; +inf where q gives
        probability 0 to a class that p does not. Reference: ``docs/kl/discrete.md``.

    Raises:
        ValueError: if p and q have different numbers of classes.
    """
    pc, qc = _categorical(p), _categorical(q)
    if pc._num_events != qc._num_events:
        raise ValueError(
            f"number of classes differs: p {type(p).__name__} has {pc._num_events}, "
            f"q {type(q).__name__} has {qc._num_events}"
        )
    pp, a = _probs_and_logits(pc)
    qp, b = _probs_and_logits(qc)
    kl, score = _direct(pp, a, qp, b)
    threshold = direct_above(kl.dtype) if kl.dtype in (torch.float32, torch.float64) else math.inf
    return refine(kl, score, threshold, _termwise, pp, a, qp, b, event_dims=1)


def _direct(
    pp: torch.Tensor, a: torch.Tensor | None, qp: torch.Tensor, b: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(KL, score) of the fast path: KL = Σ_i p_i·ℓ_i / P + log(Q/P) with ℓ_i = a_i − b_i
    (logits) or log(p_i/q_i) (probabilities), whose absolute error is a few eps times
    1 + Σ|p_i·ℓ_i|/P; score = KL/(1 + Σ|p_i·ℓ_i|/P)."""
    inplace = not grad_needed(pp, qp)
    if a is not None and b is not None:
        terms = a - b
    else:
        terms = pp / qp
        tiny = torch.finfo(terms.dtype).tiny
        terms = terms.clamp_min_(tiny).log_() if inplace else terms.clamp_min(tiny).log()
    terms = terms.mul_(pp) if inplace else terms * pp
    total_p, total_q = _row_sum(pp), _row_sum(qp)
    kl = _row_sum(terms) / total_p + torch.log(total_q / total_p)
    mass = _row_sum(terms.abs_() if inplace else terms.abs()) / total_p
    return kl, kl / (1 + mass)


# Up to this many classes, a row sum is a matrix-vector product with a vector of ones (3× faster
# in torch than a reduction over a short last dimension; its rounding error, ≤ (K − 1)·eps of
# the sum of absolute values, is then within the few eps the fast path allows).
_MATVEC_SUM_MAX_K = 4


def _row_sum(x: torch.Tensor) -> torch.Tensor:
    """x.sum(-1)."""
    k = x.shape[-1]
    if k > _MATVEC_SUM_MAX_K or x.dim() < 2:
        return x.sum(-1)
    return x @ torch.ones(k, dtype=x.dtype, device=x.device)


def _termwise(
    pp: torch.Tensor, a: torch.Tensor | None, qp: torch.Tensor, b: torch.Tensor | None
) -> torch.Tensor:
    """(Σ_i t(p_i, q_i) − t(P, Q)) / P, see the module docstring."""
    s = pp + qp
    if a is not None and b is not None:
        # u = (p − q)/(p + q) = tanh((a − b)/2), exact for close logits; 0 where
        # p_i = q_i = 0 (both logits −inf, or so negative that exp underflows).
        u = torch.where(s > 0, torch.tanh((a - b) / 2), 0.0)
        diff = s * u
    else:
        diff = pp - qp
        u = diff / s.clamp_min(torch.finfo(s.dtype).tiny)
    terms = poisson_term_su(pp, qp, s, u).sum(-1)
    total_p, total_q = pp.sum(-1), qp.sum(-1)
    correction = poisson_term(total_p, total_q, diff.sum(-1))
    return ((terms - correction) / total_p).clamp_min(0)


@register_kl(Categorical, Categorical)
def _kl_categorical_categorical(p: Categorical, q: Categorical) -> torch.Tensor:
    r"""Batchwise KL(p ‖ q) for Categorical laws: Σ_i p_i·log(p_i/q_i), see
    :func:`categorical_kl`. Result shape: broadcast of the batch shapes."""
    return categorical_kl(p, q)


@register_kl(OneHotCategorical, OneHotCategorical)
def _kl_onehotcategorical_onehotcategorical(
    p: OneHotCategorical, q: OneHotCategorical
) -> torch.Tensor:
    r"""Batchwise KL(p ‖ q) for OneHotCategorical laws: Σ_i p_i·log(p_i/q_i), see
    :func:`categorical_kl`. Result shape: broadcast of the batch shapes."""
    return categorical_kl(p, q)


@register_kl(Categorical, OneHotCategorical)
def _kl_categorical_onehotcategorical(p: Categorical, q: OneHotCategorical) -> torch.Tensor:
    r"""Batchwise KL(p ‖ q) for a Categorical p and a OneHotCategorical q over the same K classes
    (the same law up to the encoding of outcomes): Σ_i p_i·log(p_i/q_i), see
    :func:`categorical_kl`. Result shape: broadcast of the batch shapes."""
    return categorical_kl(p, q)


@register_kl(OneHotCategorical, Categorical)
def _kl_onehotcategorical_categorical(p: OneHotCategorical, q: Categorical) -> torch.Tensor:
    r"""Batchwise KL(p ‖ q) for a OneHotCategorical p and a Categorical q over the same K classes
    (the same law up to the encoding of outcomes): Σ_i p_i·log(p_i/q_i), see
    :func:`categorical_kl`. Result shape: broadcast of the batch shapes."""
    return categorical_kl(p, q)
