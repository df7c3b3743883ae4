r"""Monte Carlo estimators of KL(p ‖ q), for pairs without a closed form.

With :math:`x_i \sim p` and :math:`\log r_i = \log q(x_i) - \log p(x_i)`:

* ``"naive"``: :math:`\widehat{KL} = \frac1n \sum_i -\log r_i`. Unbiased; single terms can be
  negative.
* ``"k3"``: :math:`\widehat{KL} = \frac1n \sum_i (r_i - 1) - \log r_i`. Unbiased too, because
  :math:`E_p[r] = 1`, and every term is :math:`\ge 0` (since :math:`\log r \le r - 1`). Its
  variance is usually lower when q is close to p, but it is *infinite* when
  :math:`E_p[r^2] = \int q^2/p` diverges, e.g. Gaussians with some :math:`\sigma_p^2 \le
  \sigma_q^2/2`: prefer ``"naive"`` when p is much narrower than q.

Samples are reparameterized (``rsample``) when p allows it, so the estimate is differentiable
in p's parameters along the sample path; otherwise a score-function surrogate is added that
leaves the value unchanged and makes its gradient unbiased. Every estimate comes with its
standard error, the sample standard deviation over :math:`\sqrt n`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Literal

import torch
from torch.distributions import (
    Beta,
    Categorical,
    Dirichlet,
    Distribution,
    OneHotCategorical,
)

from probgen.kl.result import KLResult
from probgen.kl.stable import expm1_minus_x
from probgen.kl.validation import check_pair

__all__ = ["ESTIMATORS", "mc_kl"]

Estimator = Literal["naive", "k3"]
ESTIMATORS: tuple[str, ...] = ("naive", "k3")


def _device_of(d: Distribution) -> torch.device:
    for value in vars(d).values():
        if torch.is_tensor(value):
            return value.device
        if isinstance(value, Distribution):
            return _device_of(value)
    return torch.device("cpu")


@contextlib.contextmanager
def _seeded(
    seed: int | None, generator: torch.Generator | None, device: torch.device
) -> Iterator[None]:
    """Run the block on a private copy of the global RNG state, seeded from ``seed`` or
    ``generator`` (which advances); with neither, use the global RNG as it is."""
    if seed is None and generator is None:
        yield
        return
    if generator is not None:
        seed = int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _nested(d: Distribution) -> Iterator[Distribution]:
    """``d`` and the base distributions it wraps (Independent, TransformedDistribution, …)."""
    while d is not None:
        yield d
        d = getattr(d, "base_dist", None)


def _log_prob_or_neginf(q: Distribution, x: torch.Tensor) -> torch.Tensor:
    """log q(x), with −inf (instead of an error or NaN) where x is outside q's support."""
    chain = list(_nested(q))
    validate = [d._validate_args for d in chain]
    for d in chain:
        d._validate_args = False
    try:
        log_q = q.log_prob(x)
    finally:
        for d, v in zip(chain, validate, strict=True):
            d._validate_args = v
    return torch.where(q.support.check(x), log_q, torch.full_like(log_q, -math.inf))


def _raise_nan(
    p: Distribution, q: Distribution, x: torch.Tensor, log_p: torch.Tensor, log_r: torch.Tensor
) -> None:
    bad = torch.isnan(log_r)
    first = tuple(int(i) for i in bad.nonzero()[0])
    sample = x[first].detach()
    shown = sample.item() if sample.numel() == 1 else sample.tolist()
    raise FloatingPointError(
        f"log densities are NaN at {int(bad.sum())} of {bad.numel()} sampled points "
        f"(first at index {first}: x = {shown!r}, log p(x) = {log_p[first].item()!r}) for "
        f"p={type(p).__name__}, q={type(q).__name__}; a sample rounded onto the boundary of "
        f"the support (x.dtype is {x.dtype}) is the usual cause: use float64"
    )


def _in_event_space_of(q: Distribution, p: Distribution, x: torch.Tensor) -> torch.Tensor:
    """Samples ``x`` of ``p`` written in ``q``'s event space, for the pairs whose laws are the
    same in two encodings: Categorical index ↔ OneHotCategorical vector, Beta's x ↔ a
    2-component Dirichlet's (x, 1 − x)."""
    if p.event_shape == q.event_shape:
        return x
    if isinstance(p, Categorical) and isinstance(q, OneHotCategorical):
        k = q.event_shape[-1]
        return torch.nn.functional.one_hot(x, k).to(q.probs.dtype)
    if isinstance(p, OneHotCategorical) and isinstance(q, Categorical):
        return x.argmax(-1)
    if isinstance(p, Beta) and isinstance(q, Dirichlet):
        return torch.stack([x, 1 - x], -1)
    if isinstance(p, Dirichlet) and isinstance(q, Beta):
        return x[..., 0]
    raise ValueError(
        f"event shapes differ: p {type(p).__name__} has event_shape {tuple(p.event_shape)}, "
        f"q {type(q).__name__} has event_shape {tuple(q.event_shape)}"
    )


def check_mc_args(
    num_samples: int, estimator: str, seed: int | None, generator: torch.Generator | None
) -> None:
    """Raise ``ValueError`` on arguments :func:`mc_kl` cannot use."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"num_samples must be an integer ≥ 2, got {num_samples!r}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if seed is not None and generator is not None:
        raise ValueError(f"give seed or generator, not both (got seed={seed!r} and a generator)")


def mc_kl(
    p: Distribution,
    q: Distribution,
    num_samples: int = 1000,
    *,
    estimator: Estimator = "naive",
    seed: int | None = None,
    generator: torch.Generator | None = None,
    validate: bool = True,
) -> KLResult:
    r"""Monte Carlo estimate of KL(p ‖ q) = E_{x∼p}[log p(x) − log q(x)], with its standard error.

    Args:
        p: the distribution samples are drawn from.
        q: the reference distribution; same event shape as ``p``.
        num_samples: number of samples ``n`` (≥ 2, so that a standard error exists).
        estimator: ``"naive"`` (default) or ``"k3"`` (every term ≥ 0, lower variance when q
            is close to p, infinite variance when p is much narrower than q).
        seed: if given, the samples are drawn from a private RNG seeded with it; the global RNG
            is left untouched.
        generator: alternatively (not together with ``seed``), a ``torch.Generator`` to derive
            the seed from (it advances).
        validate: check parameters and shapes first, as :func:`probgen.kl_divergence` does.

    Returns:
        :class:`KLResult` with ``value`` and ``stderr`` of shape
        ``broadcast(p.batch_shape, q.batch_shape)``, ``method="mc"``. Where a sample falls
        outside q's support the KL is +inf for certain: ``value`` is inf and ``stderr`` 0.

    Raises:
        ValueError: on ``num_samples < 2``, an unknown estimator, both ``seed`` and
            ``generator``, and (with ``validate``) an invalid parameter, different event
            shapes or batch shapes that do not broadcast.
        FloatingPointError: if a log-density is NaN at a sample (e.g. a float32 sample rounded
            onto the boundary of the support), instead of returning NaN.
    """
    check_mc_args(num_samples, estimator, seed, generator)
    if validate:
        shape = check_pair(p, q)
    else:
        shape = torch.broadcast_shapes(p.batch_shape, q.batch_shape)
    if p.batch_shape != shape:
        # Independent samples for every element of the broadcast batch, so that x lines up
        # with q's batch dimensions.
        p = p.expand(shape)

    with _seeded(seed, generator, _device_of(p)):
        if p.has_rsample:
            x = p.rsample((num_samples,))
            gradient = "reparameterized"
        else:
            x = p.sample((num_samples,))
            gradient = "score_function"

    log_p = p.log_prob(x)
    log_r = _log_prob_or_neginf(q, _in_event_space_of(q, p, x)) - log_p
    if bool(torch.isnan(log_r).any()):
        _raise_nan(p, q, x, log_p, log_r)
    terms = -log_r if estimator == "naive" else expm1_minus_x(log_r)
    if gradient == "score_function" and log_p.requires_grad:
        # Surrogate: same value, gradient E[∇f + f ∇log p] (the score-function estimator).
        terms = terms + terms.detach() * (log_p - log_p.detach())

    value = terms.mean(0)
    stderr = terms.detach().std(0) / math.sqrt(num_samples)
    # A sample where q has no mass proves KL = +inf; the spread of inf terms is not an error.
    stderr = torch.where(value.detach() == math.inf, torch.zeros_like(stderr), stderr)
    return KLResult(
        value=value,
        method="mc",
        stderr=stderr,
        num_samples=num_samples,
        estimator=estimator,
        gradient=gradient,
    )
