r"""KL(p ‖ q) between Bernoulli laws, and the two-point core that Binomial and Geometric reuse.

With p, p̄ = 1 − p and q, q̄ = 1 − q,

.. math::

    KL = p\log\frac{p}{q} + \bar p\log\frac{\bar p}{\bar q}
       = t(p, q) + t(\bar p, \bar q), \qquad t(x, y) = x\log\frac{x}{y} - x + y \ge 0

(the linear parts cancel because p + p̄ = q + q̄). Each term is evaluated by
:func:`probgen.kl.discrete_terms.poisson_term` from an accurately computed difference q − p:

* probabilities given: q − p directly (exact when p and q are close, Sterbenz); never clamped,
  so 0 and 1 are valid (0·log 0 = 0; +inf where p puts mass that q lacks);
* logits a, b given: p = σ(a), p̄ = σ(−a) (both to full relative precision even when p is within
  1e-300 of 1), and with δ = b − a (exact when a ≈ b)

  .. math::  q - p = \sigma(b) - \sigma(a) =
      \begin{cases} -q\,\bar p\,\operatorname{expm1}(-δ) & δ \ge 0 \\
                     p\,\bar q\,\operatorname{expm1}(δ) & δ < 0. \end{cases}
"""

from __future__ import annotations

import torch
from torch.distributions import Bernoulli, Distribution

from probgen.kl.discrete_terms import poisson_term
from probgen.kl.registry import register_kl

__all__ = ["binary_kl", "two_point"]


def two_point(d: Distribution) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(p, 1 − p, logits or ``None``) of a Bernoulli-type law, from the parameter it was given.

    torch keeps the given parametrisation in ``d.__dict__``; the other one is a lazy property
    (and ``logits`` computed from ``probs`` is clamped), so it is never read here.
    """
    if "logits" in d.__dict__:
        logits = d.logits
        return torch.sigmoid(logits), torch.sigmoid(-logits), logits
    probs = d.probs
    return probs, 1 - probs, None


def binary_kl(p_dist: Distribution, q_dist: Distribution) -> torch.Tensor:
    """KL between the two-point laws (p, 1 − p) and (q, 1 − q) of two Bernoulli-type laws.

    Works for any pair of distributions with ``probs``/``logits`` (Bernoulli, Binomial,
    Geometric). Result shape: broadcast of the parameters' shapes; ≥ 0, +inf on support mismatch.
    """
    p, pc, a = two_point(p_dist)
    q, qc, b = two_point(q_dist)
    if a is not None and b is not None:
        delta = b - a
        e = torch.expm1(-delta.abs())
        q_minus_p = torch.where(delta >= 0, -q * pc, p * qc) * e
    else:
        q_minus_p = q - p  # exact whenever q/p ∈ [1/2, 2] (Sterbenz), so 1 − p is never needed
    return poisson_term(p, q, -q_minus_p) + poisson_term(pc, qc, q_minus_p)


@register_kl(Bernoulli, Bernoulli)
def _kl_bernoulli_bernoulli(p: Bernoulli, q: Bernoulli) -> torch.Tensor:
    r"""Batchwise KL(p ‖ q) for Bernoulli laws.

    .. math::  KL = p\log\frac{p}{q} + (1 - p)\log\frac{1 - p}{1 - q}
                  = t(p, q) + t(1 - p, 1 - q),

    t(x, y) = x·log(x/y) − x + y ≥ 0 evaluated stably (see the module docstring): on logits when
    the distribution was given logits, on probabilities (never clamped) otherwise.

    Returns:
        Tensor of shape ``broadcast(p.batch_shape, q.batch_shape)``; +inf where p puts mass on an
        outcome that q gives probability 0. Reference: ``docs/kl/discrete.md``.
    """
    return binary_kl(p, q)
