r"""KL(p ‖ q) between continuous Bernoulli laws (Loaiza-Ganem & Cunningham, NeurIPS 2019).

CB(λ) has density C(λ)·λ^x·(1 − λ)^{1−x} on [0, 1]. In its natural parameter η = logit λ it is
an exponential family with sufficient statistic x and log-partition

.. math::

    A(η) = \log\int_0^1 e^{ηx}\,dx = \log\frac{\operatorname{expm1}(η)}{η}, \qquad
    μ(η) = A'(η) = \frac{1}{1 - e^{-η}} - \frac1η, \qquad
    V(η) = A''(η) = \frac{1}{η^2} - \frac{1}{4\sinh^2(η/2)},

all with a removable singularity at η = 0 (λ = 1/2). The KL is the Bregman divergence of A,

.. math::

    KL(a \,\|\, b) = A(b) - A(a) - (b - a)\,μ(a) = δ^2\int_0^1 (1 - s)\,V(a + sδ)\,ds,
    \qquad δ = b - a,

symmetric under (a, b) → (−a, −b) (the reflection x → 1 − x), so a ≥ 0 is assumed below.
Three evaluations, each used where it is accurate:

* |δ| ≤ 2: the integral by 8-point Gauss–Legendre quadrature. The integrand is positive (no
  cancellation at all) and analytic in a strip of half-width 2π/|δ| ≥ π, so the rule's error is
  below 1e-17 relative. V uses its Taylor series (Bernoulli numbers) for |η| < 1.
* |δ| > 2, a ≥ 3, b > 0: A(η) = F(η) − log η with F = log expm1, split into two Bregman
  divergences, g(δ/a) + [log1p(z) − wδ] with g(x) = x − log1p(x),
  w = 1/expm1(a), z = (e^{−a} − e^{−b})/(1 − e^{−a}) (no overflow for any a).
* otherwise (|δ| > 2 and a < 3 or b ≤ 0): the direct form, where the KL is O(δ²/24) and no
  digits are lost; A and μ use their series near 0.

δ is computed exactly when the parameters are close: b − a from logits, and
log1p(d/λ_p) − log1p(−d/(1 − λ_p)) with d = λ_q − λ_p from probabilities.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch.distributions import ContinuousBernoulli

from probgen.kl.bernoulli import given_parameter
from probgen.kl.registry import register_kl
from probgen.kl.special import Selection, fast_or_stable, gather
from probgen.kl.stable import x_minus_log1p

__all__ = ["continuous_bernoulli_kl"]

# Gauss–Legendre nodes and weights on [0, 1], 8 points.
_NODES = (
    0.019855071751231856,
    0.10166676129318664,
    0.2372337950418355,
    0.4082826787521751,
    0.5917173212478249,
    0.7627662049581645,
    0.8983332387068134,
    0.9801449282487681,
)
_WEIGHTS = (
    0.05061426814518813,
    0.11119051722668724,
    0.15685332293894363,
    0.18134189168918100,
    0.18134189168918100,
    0.15685332293894363,
    0.11119051722668724,
    0.05061426814518813,
)


def _bernoulli_numbers(n: int) -> list[Fraction]:
    """B_0 … B_n (B_1 = −1/2), by the standard recurrence."""
    b = [Fraction(1)]
    for m in range(1, n + 1):
        b.append(-sum(math.comb(m + 1, k) * b[k] for k in range(m)) / (m + 1))
    return b


_B = _bernoulli_numbers(40)
# V(t) = Σ_k v_k t^{2k}, v_k = 4^{k+1}(2k+1)·B_{2k+2}/((2k+2)!·4^{k+1}) = (2k+1)B_{2k+2}/(2k+2)!
# (from csch²x = 1/x² − Σ_{n≥1} 4^n(2n−1)B_{2n}x^{2n−2}/(2n)!); radius 2π, |t| < 1 used.
_V_COEFFS = tuple(float((2 * k + 1) * _B[2 * k + 2] / math.factorial(2 * k + 2)) for k in range(12))
# B(η) = log(sinh(η/2)/(η/2)) = Σ_{n≥1} B_{2n} η^{2n}/(2n·(2n)!), used for |η| < 0.01.
_A_COEFFS = tuple(float(_B[2 * n] / (2 * n * math.factorial(2 * n))) for n in (1, 2, 3))
# μ(η) − 1/2 = B'(η) = Σ_{n≥1} B_{2n} η^{2n−1}/(2n)!, used for |η| < 0.1.
_MU_COEFFS = tuple(float(_B[2 * n] / math.factorial(2 * n)) for n in (1, 2, 3, 4, 5))


def _poly(z: torch.Tensor, coeffs: tuple[float, ...]) -> torch.Tensor:
    acc = torch.full_like(z, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        acc = acc * z + c
    return acc


def _variance(t: torch.Tensor) -> torch.Tensor:
    """V(t) = 1/t² − 1/(4 sinh²(t/2)) > 0, series for |t| < 1.

    Each branch is evaluated at its argument clamped to its range (V is even: the direct form
    at max(|t|, 1)), so that both are finite and the selection is the arithmetic
    s·m + d·(1 − m), m ∈ {0, 1}: the same values and gradients as torch.where, without its
    per-element branch (on CPU several times slower than a multiplication when the mask is
    unpredictable, as it is along the quadrature nodes)."""
    size = t.abs()
    small = (size < 1).to(t.dtype)
    nterms = 12 if t.dtype == torch.float64 else 6
    ts = t.clamp(-1, 1)
    series = _poly(ts * ts, _V_COEFFS[:nterms])
    tt = size.clamp_min_(1)
    inv = 1 / tt
    direct = inv * inv - 0.25 / torch.sinh(tt / 2) ** 2
    return torch.addcmul(series * small, direct, 1 - small)


def _reflection(a: torch.Tensor) -> torch.Tensor:
    """−1 where a < 0, 1 elsewhere (exactly, as 1 − 2·[a < 0]; torch.where with such a mask
    branches per element)."""
    return 1 - 2 * (a < 0).to(a.dtype)


def _log_partition(eta: torch.Tensor) -> torch.Tensor:
    """A(η) = log(expm1(η)/η), any sign of η, series for |η| < 0.01."""
    small = eta.abs() < 0.01
    e2 = eta * eta
    series = eta / 2 + e2 * _poly(e2, _A_COEFFS)
    x = torch.where(small, torch.ones_like(eta), eta).abs()
    direct = eta.clamp_min(0) + torch.log(-torch.expm1(-x)) - torch.log(x)
    return torch.where(small, series, direct)


def _mean(a: torch.Tensor) -> torch.Tensor:
    """μ(a) = 1/(1 − e^{−a}) − 1/a for a ≥ 0, series for a < 0.1."""
    small = a < 0.1
    series = 0.5 + a * _poly(a * a, _MU_COEFFS)
    x = torch.where(small, torch.ones_like(a), a)
    direct = -1 / torch.expm1(-x) - 1 / x
    return torch.where(small, series, direct)


def _quadrature(a: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    total = torch.zeros_like(a)
    for s, w in zip(_NODES, _WEIGHTS, strict=True):
        total = total + (w * (1 - s)) * _variance(a + s * delta)
    return delta * delta * total


def _split(a: torch.Tensor, b: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    ea = torch.exp(-a)
    w = ea / -torch.expm1(-a)
    z = (ea - torch.exp(-b)) / -torch.expm1(-a)
    return x_minus_log1p(delta / a) + torch.log1p(z) - w * delta


def _direct(a: torch.Tensor, b: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    return _log_partition(b) - _log_partition(a) - delta * _mean(a)


def continuous_bernoulli_kl(a: torch.Tensor, b: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    r"""KL(CB(logit a) ‖ CB(logit b)) given δ = b − a computed as accurately as possible.

    Args:
        a, b, delta: broadcastable tensors of logits (finite) and their difference.

    Returns:
        Tensor of the broadcast shape, ≥ 0. See the module docstring for the formula.
    """
    shape = torch.broadcast_shapes(a.shape, b.shape, delta.shape)
    a, b, delta = (t.expand(shape).reshape(-1) for t in (a, b, delta))
    sign = _reflection(a)
    a, b, delta = a * sign, b * sign, delta * sign
    near = delta.abs() <= 2
    split = ~near & (a >= 3) & (b > 0)
    rest = ~near & ~split
    out = torch.zeros_like(delta)
    for mask, fn in ((near, None), (split, _split), (rest, _direct)):
        if not bool(mask.any()):
            continue
        if bool(mask.all()):
            idx = None
            args = (a, b, delta)
        else:
            idx = mask.nonzero().squeeze(-1)
            args = (a[idx], b[idx], delta[idx])
        values = _quadrature(args[0], args[2]) if fn is None else fn(*args)
        out = values if idx is None else out.index_put((idx,), values)
    return out.clamp_min(0).reshape(shape)


def _logit_and_probs(d: ContinuousBernoulli) -> tuple[torch.Tensor, torch.Tensor | None]:
    if given_parameter(d) == "logits":
        return d.logits, None
    return d.logits, d.probs


@register_kl(ContinuousBernoulli, ContinuousBernoulli)
def _kl_continuous_bernoulli_continuous_bernoulli(
    p: ContinuousBernoulli, q: ContinuousBernoulli
) -> torch.Tensor:
    r"""Batchwise KL(p ‖ q) for continuous Bernoulli laws with logits a = logit λ_p, b = logit λ_q.

    .. math::  KL = A(b) - A(a) - (b - a)\,μ(a) = δ^2\int_0^1 (1 - s)\,A''(a + sδ)\,ds,

    A(η) = log(expm1(η)/η), δ = b − a; evaluated by quadrature of the positive integrand for
    |δ| ≤ 2 and by cancellation-free closed forms otherwise (module docstring). Stable at and
    near λ = 1/2 and for near-equal parameters. Probabilities given to torch are clamped by torch
    itself to [eps, 1 − eps] on construction; logits are used as given.

    Returns:
        Tensor of shape ``broadcast(p.batch_shape, q.batch_shape)``. Reference:
        ``docs/kl/discrete.md`` and Loaiza-Ganem & Cunningham (2019).
    """
    a, lam_p = _logit_and_probs(p)
    b, lam_q = _logit_and_probs(q)
    if lam_p is not None and lam_q is not None:
        d = lam_q - lam_p
        delta = torch.log1p(d / lam_p) - torch.log1p(-d / (1 - lam_p))
    else:
        delta = b - a
    if delta.dtype != torch.float64:
        return continuous_bernoulli_kl(a, b, delta)
    return _direct_or_quadrature(a, b, delta)


def _direct_or_quadrature(a: torch.Tensor, b: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """float64: the direct form A(b) − A(a) − δμ(a) on every element (a ≥ 0 after the
    reflection), kept where its rounding bound 8·eps·M meets the target
    (:func:`probgen.kl.special.fast_or_stable`), :func:`continuous_bernoulli_kl` elsewhere
    (close logits: there the direct form cancels). M adds the sizes of the logs inside A
    (≤ 2|log max(|η|, 0.01)| + |η| + 1 each) and of the two reciprocals inside μ
    (|δ|·(|μ| + 1 + 2/max(a, 0.1)))."""
    a, b, delta = torch.broadcast_tensors(a, b, delta)
    sign = _reflection(a)
    af, bf, df = a * sign, b * sign, delta * sign
    mean = _mean(af)
    value = _log_partition(bf) - _log_partition(af) - df * mean
    with torch.no_grad():
        magnitude = torch.zeros_like(value)
        for eta in (af, bf):
            size = eta.abs()
            magnitude += size.clamp_min(0.01).log_().abs_().mul_(2).add_(size).add_(1)
        magnitude += df.abs() * (mean.abs() + 1 + 2 / af.clamp_min(0.1))

    def quadrature(selection: Selection) -> torch.Tensor:
        return continuous_bernoulli_kl(*gather(selection, a, b, delta))

    return fast_or_stable(value, magnitude, quadrature, torch.float64)
