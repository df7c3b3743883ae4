r"""The optimal discriminator D* and the value of the game under known densities.

For fixed G, V(D, G) = ∫ p_data(x) log D(x) + p_g(x) log(1 − D(x)) dx is maximized pointwise by

.. math::

    D^*(x) = \frac{p_{data}(x)}{p_{data}(x) + p_g(x)}, \qquad
    \operatorname{logit} D^*(x) = \log p_{data}(x) - \log p_g(x),

and there :math:`V(D^*, G) = -\log 4 + 2\,JSD(p_{data} \| p_g)`. Reference: Goodfellow et al.,
*Generative Adversarial Nets* (2014), Proposition 1 and Theorem 1; derivation in ``docs/gan.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch.distributions import Distribution

from probgen.gan.jsd import jsd
from probgen.gan.quadrature import integrate_pair, is_univariate_continuous, log_prob_or_neginf
from probgen.gan.result import Estimate
from probgen.gan.value import log_d, log_one_minus_d
from probgen.kl.validation import check_pair

__all__ = [
    "LOG_4",
    "expected_value",
    "optimal_discriminator",
    "optimal_logit",
    "optimal_value",
]

LOG_4 = math.log(4.0)
LogitFn = Callable[[torch.Tensor], torch.Tensor]


def _optimal_logit_from(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    both_zero = (log_p == -math.inf) & (log_q == -math.inf)
    difference = log_p - torch.where(both_zero, torch.zeros_like(log_q), log_q)
    return torch.where(both_zero, torch.zeros_like(difference), difference)


def optimal_logit(p_data: Distribution, p_g: Distribution, x: torch.Tensor) -> torch.Tensor:
    r"""logit D*(x) = log p_data(x) − log p_g(x), from log densities (no overflow or 0/0).

    It is +∞ where only p_data has mass and −∞ where only p_g has; where neither has, D* is
    arbitrary and 0 (D* = ½) is returned.

    Args:
        p_data, p_g: distributions with the same event shape.
        x: points, shape ``(*sample, *event)``.

    Returns:
        Tensor of shape ``(*sample, *batch)``.
    """
    return _optimal_logit_from(log_prob_or_neginf(p_data, x), log_prob_or_neginf(p_g, x))


def optimal_discriminator(p_data: Distribution, p_g: Distribution, x: torch.Tensor) -> torch.Tensor:
    r"""D*(x) = p_data(x) / (p_data(x) + p_g(x)) = σ(log p_data(x) − log p_g(x)).

    Shapes as in :func:`optimal_logit`.
    """
    return torch.sigmoid(optimal_logit(p_data, p_g, x))


def optimal_value(p_data: Distribution, p_g: Distribution, **jsd_kwargs: object) -> Estimate:
    r"""max_D V(D, G) = V(D*, G) = −log 4 + 2·JSD(p_data ‖ p_g), in [−log 4, 0].

    Args:
        p_data, p_g: the data distribution and the generator's distribution.
        **jsd_kwargs: passed to :func:`probgen.gan.jsd` (``method``, ``num_samples``, ``seed``, …).

    Returns:
        :class:`Estimate` of shape ``broadcast(batch shapes)``; a Monte Carlo standard error is
        twice the JSD's.
    """
    est = jsd(p_data, p_g, return_info=True, **jsd_kwargs)  # type: ignore[arg-type]
    assert isinstance(est, Estimate)
    return Estimate(
        value=2.0 * est.value - LOG_4,
        method=est.method,
        stderr=None if est.stderr is None else 2.0 * est.stderr,
        abserr=None if est.abserr is None else 2.0 * est.abserr,
        num_samples=est.num_samples,
    )


def _logits(logit_fn: LogitFn, x: torch.Tensor) -> torch.Tensor:
    """``logit_fn(x)``, refused with the first offending point where it is NaN (±∞ is allowed)."""
    logits = logit_fn(x)
    nan = torch.isnan(logits)
    if bool(nan.any()):
        index = tuple(int(i) for i in nan.nonzero()[0])
        raise ValueError(
            f"logit_fn returned NaN at {x[index[0]].tolist()!r} (row {index[0]} of its input)"
        )
    return logits


def _value_terms(logits: torch.Tensor, log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """p log D + q log(1 − D), zero where a density is zero (even where D is 0 or 1 there)."""
    zero = torch.zeros_like(logits)
    real = torch.where(log_p > -math.inf, log_p.exp() * log_d(logits), zero)
    fake = torch.where(log_q > -math.inf, log_q.exp() * log_one_minus_d(logits), zero)
    return real + fake


def expected_value(
    logit_fn: LogitFn,
    p_data: Distribution,
    p_g: Distribution,
    method: Literal["auto", "quadrature", "mc"] = "auto",
    *,
    num_samples: int = 10_000,
    seed: int | None = None,
    points: list[float] | None = None,
    validate: bool = True,
) -> Estimate:
    r"""V(D, G) = E_{p_data}[log D(x)] + E_{p_g}[log(1 − D(x))] for known distributions.

    The generator enters through its distribution ``p_g`` (the push-forward of p_z by G).
    Quadrature gives V to ~1e-10 for univariate continuous pairs, so comparisons such as
    V(D*, G) ≥ V(D, G) are exact rather than statistical.

    Args:
        logit_fn: the discriminator's logit, mapping points of shape ``(n, *event)`` to logits
            of shape ``(n, *B)`` (B broadcastable with the distributions' batch shape); it may
            return ±∞ (as :func:`optimal_logit` does).
        p_data, p_g: the data distribution and the generator's distribution.
        method: ``"quadrature"`` (univariate continuous only), ``"mc"`` (``num_samples`` from
            each, standard error from both means), or ``"auto"``: quadrature where it applies.
        seed: seed of the Monte Carlo samples (private generator).
        points: extra quadrature breakpoints (e.g. kinks of ``logit_fn``).

    Returns:
        :class:`Estimate` of the broadcast batch shape.

    Raises:
        ValueError: on a bad ``method`` or ``num_samples``, or where ``logit_fn`` returns NaN
            (the point is named).
    """
    if method not in ("auto", "quadrature", "mc"):
        raise ValueError(f"method must be one of ('auto', 'quadrature', 'mc'), got {method!r}")
    if validate:
        check_pair(p_data, p_g)
    one_d = is_univariate_continuous(p_data) and is_univariate_continuous(p_g)
    if method == "quadrature" and not one_d:
        raise ValueError(
            "method='quadrature' needs univariate continuous p_data and p_g, got "
            f"{type(p_data).__name__} and {type(p_g).__name__}"
        )
    if method != "mc" and one_d:
        value, abserr = integrate_pair(
            lambda x, log_p, log_q: _value_terms(_logits(logit_fn, x), log_p, log_q)[0],
            p_data,
            p_g,
            points=points,
        )
        return Estimate(value=value, method="quadrature", abserr=abserr)

    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"num_samples must be an integer ≥ 2, got {num_samples!r}")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    with torch.random.fork_rng(devices=[], enabled=generator is not None):
        if generator is not None:
            torch.manual_seed(int(torch.randint(0, 2**62, (), generator=generator)))
        x_real = p_data.sample((num_samples,))
        x_fake = p_g.sample((num_samples,))
    real = log_d(_logits(logit_fn, x_real))
    fake = log_one_minus_d(_logits(logit_fn, x_fake))
    stderr = (real.detach().var(0) / num_samples + fake.detach().var(0) / num_samples).sqrt()
    return Estimate(
        value=real.mean(0) + fake.mean(0), method="mc", stderr=stderr, num_samples=num_samples
    )
