r"""Jensen–Shannon divergence, JSD(P ‖ Q) = ½ KL(P ‖ M) + ½ KL(Q ‖ M) with M = ½(P + Q).

JSD is symmetric, finite even for disjoint supports, and lies in [0, log 2] (nats). Written on
log densities, with :math:`\log m = \operatorname{logaddexp}(\log p, \log q) - \log 2`,

.. math::

    JSD(P \| Q) = \tfrac12 E_P[\log p - \log m] + \tfrac12 E_Q[\log q - \log m],

and both integrands are at most log 2. Reference: Lin, *Divergence measures based on the
Shannon entropy*, IEEE Trans. Inf. Theory 37 (1991); its role in GANs: Goodfellow et al. (2014),
Theorem 1, and ``docs/gan.md``.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Literal

import torch
from torch.distributions import Distribution, Uniform, constraints

from probgen.gan.quadrature import integrate_pair, is_univariate_continuous, log_prob_or_neginf
from probgen.gan.result import Estimate
from probgen.kl.monte_carlo import mc_kl
from probgen.kl.validation import check_pair

__all__ = ["JSD_METHODS", "EqualMixture", "jsd"]

JSDMethod = Literal["auto", "exact", "quadrature", "mc"]
JSD_METHODS: tuple[str, ...] = ("auto", "exact", "quadrature", "mc")
_LOG2 = math.log(2.0)


class _UnionConstraint(constraints.Constraint):
    def __init__(self, a: constraints.Constraint, b: constraints.Constraint) -> None:
        self.a, self.b = a, b
        self.is_discrete = a.is_discrete and b.is_discrete
        self.event_dim = a.event_dim
        super().__init__()

    def check(self, value: torch.Tensor) -> torch.Tensor:
        return self.a.check(value) | self.b.check(value)


class EqualMixture(Distribution):
    r"""M = ½(P + Q): log m(x) = logaddexp(log p(x), log q(x)) − log 2.

    Args:
        p, q: distributions with the same event shape and broadcastable batch shapes.
    """

    arg_constraints: dict = {}  # noqa: RUF012  (torch's Distribution API)

    def __init__(self, p: Distribution, q: Distribution) -> None:
        self.p, self.q = p, q
        batch_shape = torch.broadcast_shapes(p.batch_shape, q.batch_shape)
        super().__init__(batch_shape, p.event_shape, validate_args=False)

    @property
    def support(self) -> constraints.Constraint:
        if str(self.p.support) == str(self.q.support):
            return self.p.support
        return _UnionConstraint(self.p.support, self.q.support)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        log_p = log_prob_or_neginf(self.p, value)
        log_q = log_prob_or_neginf(self.q, value)
        return torch.logaddexp(log_p, log_q) - _LOG2

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        sample_shape = torch.Size(sample_shape)
        shape = self._extended_shape(sample_shape)
        x_p = self.p.sample(sample_shape).expand(shape)
        x_q = self.q.sample(sample_shape).expand(shape)
        coin = torch.rand(shape[: len(shape) - len(self.event_shape)]) < 0.5
        coin = coin.reshape(coin.shape + (1,) * len(self.event_shape))
        return torch.where(coin, x_p, x_q)


def _jsd_terms(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """½ p (log p − log m) + ½ q (log q − log m), zero where a density is zero."""
    log_m = torch.logaddexp(log_p, log_q) - _LOG2
    zero = torch.zeros_like(log_m)
    term_p = torch.where(log_p > -math.inf, log_p.exp() * (log_p - log_m), zero)
    term_q = torch.where(log_q > -math.inf, log_q.exp() * (log_q - log_m), zero)
    return 0.5 * (term_p + term_q)


def _finite_support(p: Distribution, q: Distribution) -> torch.Tensor | None:
    """The common finite support of p and q (shape ``(K, *batch, *event)``), or None."""
    if not (p.has_enumerate_support and q.has_enumerate_support and type(p) is type(q)):
        return None
    try:
        sp = p.enumerate_support(expand=False)
        sq = q.enumerate_support(expand=False)
    except (NotImplementedError, RuntimeError, ValueError):
        return None
    if sp.shape != sq.shape or not torch.equal(sp, sq):
        return None
    return sp


def _exact(p: Distribution, q: Distribution) -> torch.Tensor | None:
    if isinstance(p, Uniform) and isinstance(q, Uniform):
        return _jsd_uniform(p, q)
    support = _finite_support(p, q)
    if support is None:
        return None
    log_p = log_prob_or_neginf(p, support)
    log_q = log_prob_or_neginf(q, support)
    return _jsd_terms(log_p, log_q).sum(0)


def _jsd_uniform(p: Uniform, q: Uniform) -> torch.Tensor:
    r"""JSD of two uniforms: piecewise constant densities. On the overlap of length o the
    densities are a = 1/(b_p − a_p), b = 1/(b_q − a_q); elsewhere each contributes ½·log 2
    times its mass outside the overlap."""
    a, b = 1.0 / (p.high - p.low), 1.0 / (q.high - q.low)
    overlap = (torch.minimum(p.high, q.high) - torch.maximum(p.low, q.low)).clamp(min=0.0)
    log_a, log_b = a.log(), b.log()
    inside = overlap * _jsd_terms(log_a, log_b)
    outside = 0.5 * _LOG2 * ((1.0 - a * overlap) + (1.0 - b * overlap))
    return inside + outside


def jsd(
    p: Distribution,
    q: Distribution,
    method: JSDMethod = "auto",
    *,
    num_samples: int = 10_000,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    points: list[float] | None = None,
    validate: bool = True,
    return_info: bool = False,
) -> torch.Tensor | Estimate:
    r"""Jensen–Shannon divergence JSD(p ‖ q) = ½ KL(p ‖ m) + ½ KL(q ‖ m), m = ½(p + q), in nats.

    Args:
        p, q: distributions with the same event shape and broadcastable batch shapes.
        method: ``"exact"``: a closed form (two ``Uniform``) or the finite sum over a common
            finite support (``Bernoulli``, ``Categorical``, ``Binomial`` of one ``total_count``);
            ``"quadrature"``: scipy adaptive quadrature, for univariate continuous p and q;
            ``"mc"``: ½ ``mc_kl(p, m)`` + ½ ``mc_kl(q, m)`` with ``num_samples`` samples from each
            (unbiased, standard error from both halves); ``"auto"`` (default): the first of these
            that applies.
        num_samples, seed, generator: Monte Carlo settings (see :func:`probgen.mc_kl`); with a
            ``seed``, both halves draw from one private generator and the global RNG is untouched.
        points: extra quadrature breakpoints.
        validate: check parameters and shapes first (``ValueError`` naming the bad parameter).
        return_info: return an :class:`Estimate` (value, method, standard error or quadrature
            error bound) instead of the tensor alone.

    Returns:
        Tensor of shape ``broadcast(p.batch_shape, q.batch_shape)``, or an :class:`Estimate`.
        Exact and quadrature values are clamped to [0, log 2] (rounding can leave them a few
        ulps outside); Monte Carlo values are unbiased and may fall outside by their error.
    """
    if method not in JSD_METHODS:
        raise ValueError(f"method must be one of {JSD_METHODS}, got {method!r}")
    if validate:
        check_pair(p, q)

    result: Estimate | None = None
    if method in ("auto", "exact"):
        value = _exact(p, q)
        if value is not None:
            result = Estimate(value=value, method="exact")
        elif method == "exact":
            raise NotImplementedError(
                f"no exact JSD for p={type(p).__name__}, q={type(q).__name__}; "
                f"use method='quadrature' (1-D) or 'mc'"
            )
    if result is None and method in ("auto", "quadrature"):
        if is_univariate_continuous(p) and is_univariate_continuous(q):
            value, abserr = integrate_pair(
                lambda x, log_p, log_q: _jsd_terms(log_p, log_q)[0], p, q, points=points
            )
            result = Estimate(value=value, method="quadrature", abserr=abserr)
        elif method == "quadrature":
            raise ValueError(
                f"method='quadrature' needs univariate continuous p and q, got "
                f"p={type(p).__name__} (event_shape {tuple(p.event_shape)}), "
                f"q={type(q).__name__} (event_shape {tuple(q.event_shape)})"
            )
    if result is None:
        result = _mc_jsd(p, q, num_samples, seed, generator)
    else:  # rounding can leave an exact or quadrature value a few ulps outside [0, log 2]
        result = replace(result, value=result.value.clamp(0.0, _LOG2))
    return result if return_info else result.value


def _mc_jsd(
    p: Distribution,
    q: Distribution,
    num_samples: int,
    seed: int | None,
    generator: torch.Generator | None,
) -> Estimate:
    if seed is not None and generator is None:
        generator = torch.Generator().manual_seed(seed)
    m = EqualMixture(p, q)
    half_p = mc_kl(p, m, num_samples, generator=generator)
    half_q = mc_kl(q, m, num_samples, generator=generator)
    assert half_p.stderr is not None and half_q.stderr is not None
    return Estimate(
        value=0.5 * (half_p.value + half_q.value),
        method="mc",
        stderr=0.5 * (half_p.stderr**2 + half_q.stderr**2).sqrt(),
        num_samples=num_samples,
    )
