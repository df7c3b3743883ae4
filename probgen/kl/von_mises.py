r"""Closed-form KL divergence between von Mises distributions.

.. math::

    \mathrm{KL}(\mathrm{vM}(\mu_p, \kappa_p) \,\|\, \mathrm{vM}(\mu_q, \kappa_q))
    = \log\frac{I_0(\kappa_q)}{I_0(\kappa_p)} + A(\kappa_p)\,(\kappa_p - \kappa_q\cos(\mu_p-\mu_q))
    = D(\kappa_q, \kappa_p) + 2A(\kappa_p)\,\kappa_q \sin^2\frac{\mu_p - \mu_q}2,

with :math:`A = I_1/I_0 = (\log I_0)'` and :math:`D(\kappa_q, \kappa_p) = \log I_0(\kappa_q) -
\log I_0(\kappa_p) - A(\kappa_p)(\kappa_q - \kappa_p) \ge 0` the Bregman divergence of the
convex log-partition :math:`\log I_0`; both terms are ≥ 0. D is evaluated

* for κ_p, κ_q ≥ 30 from :math:`\log I_0(\kappa) = \kappa - \frac12\log(2\pi\kappa) +
  \tilde\ell(1/\kappa)` with the asymptotic series of :math:`\tilde\ell`, the difference taken
  analytically: :math:`D = \frac12 g(t) + \sum_j d_j\kappa_p^{-j}\,t^2\sum_{i\le j}(j-i+1)w^i`,
  :math:`t = (\kappa_q - \kappa_p)/\kappa_p`, :math:`w = \kappa_p/\kappa_q`;
* for κ_p, κ_q < 1/4 from the power series of :math:`\log I_0`, the differences of powers
  expanded binomially in δ = κ_q − κ_p;
* for close κ (|t| < 0.05) by its Taylor series in t, whose coefficients follow from the
  Riccati equation :math:`A' = 1 - A/\kappa - A^2`;
* otherwise directly, with the scaled Bessel functions ``i0e``/``i1e`` (no overflow).

Computed in float64 (torch has no von Mises pair to compete with). Derivation:
``docs/kl/von_mises.md``.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch.distributions import VonMises

from probgen.kl.registry import register_kl
from probgen.kl.special import g_of

__all__ = ["von_mises_kl"]

_LARGE = 30.0
_TERMS = 12
_NEAR = 0.05
_TAYLOR = 12


def _log_series_coefficients(terms: int) -> tuple[float, ...]:
    """d_j of log(Σ_k a_k y^k), a_k = ((2k−1)!!)² / (k! 8^k): I₀'s asymptotic series."""
    a = [Fraction(1)]
    for k in range(1, terms + 1):
        a.append(a[-1] * Fraction((2 * k - 1) ** 2, 8 * k))
    d = [Fraction(0)] * (terms + 1)
    for k in range(1, terms + 1):
        d[k] = a[k] - sum(Fraction(j, k) * d[j] * a[k - j] for j in range(1, k))
    return tuple(float(x) for x in d[1:])


_D = _log_series_coefficients(_TERMS)
_SMALL = 0.25


def _log_i0_power_coefficients(terms: int) -> tuple[float, ...]:
    """e_k of log I₀(κ) = Σ_k e_k κ^{2k}, from I₀ = Σ_k (κ²/4)^k / (k!)²."""
    a = [Fraction(1)]
    for k in range(1, terms + 1):
        a.append(a[-1] / (4 * k * k))
    e = [Fraction(0)] * (terms + 1)
    for k in range(1, terms + 1):
        e[k] = a[k] - sum(Fraction(j, k) * e[j] * a[k - j] for j in range(1, k))
    return tuple(float(x) for x in e[1:])


_E = _log_i0_power_coefficients(9)


def _small_bregman(kp: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """D for κ_p, κ_q < 1/4: Σ_k e_k Σ_{m≥2} C(2k, m) κ_p^{2k−m} δ^m (truncation < 1e-13)."""
    out = torch.zeros_like(kp)
    for k, e in enumerate(_E, start=1):
        inner = torch.zeros_like(kp)
        for m in range(2, 2 * k + 1):
            inner = inner + math.comb(2 * k, m) * kp.pow(2 * k - m) * delta.pow(m)
        out = out + e * inner
    return out


def _asymptotic_bregman(kp: torch.Tensor, kq: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    t = delta / kp
    near = t >= -0.5
    w = kp / torch.where(near, kq, kp)
    power, partial, s = w, w, w
    acc = _D[0] * s / kp
    y = 1.0 / kp
    for j in range(2, _TERMS + 1):
        power = power * w
        partial = partial + power
        s = s + partial
        y = y / kp
        acc = acc + _D[j - 1] * s * y
    series = t * t * acc
    direct = sum(_D[j - 1] * (kq.pow(-j) - kp.pow(-j) * (1 - j * t)) for j in range(1, _TERMS + 1))
    return 0.5 * g_of(kq, kp, delta) + torch.where(near, series, direct)


def _one_minus_a(k: torch.Tensor) -> torch.Tensor:
    """1 − I₁(κ)/I₀(κ), by the asymptotic series for κ ≥ 30 (no cancellation)."""
    big = k >= _LARGE
    kb = torch.where(big, k, torch.full_like(k, _LARGE))
    series = 0.5 / kb + sum(j * _D[j - 1] * kb.pow(-j - 1) for j in range(1, _TERMS + 1))
    ks = torch.where(big, torch.ones_like(k), k)
    direct = 1 - torch.special.i1e(ks) / torch.special.i0e(ks)
    return torch.where(big, series, direct)


def _taylor_bregman(kp: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """κ₀ Σ_{n≥1} c_n t^{n+1}/(n+1), A(κ₀(1 + t)) = Σ c_n t^n from the Riccati equation."""
    t = delta / kp
    c = [torch.special.i1e(kp) / torch.special.i0e(kp)]
    q = []
    total = torch.zeros_like(kp)
    tn = t
    for n in range(_TAYLOR):
        q.append(sum(c[i] * c[n - i] for i in range(n + 1)))
        forcing = kp * (float(n <= 1) - q[n] - (q[n - 1] if n >= 1 else 0))
        c.append((forcing - (n + 1) * c[n]) / (n + 1))
        tn = tn * t
        total = total + c[n + 1] * tn / (n + 2)
    return kp * total


def _log_i0_bregman(kp: torch.Tensor, kq: torch.Tensor) -> torch.Tensor:
    delta = kq - kp
    t = delta / kp
    big = torch.minimum(kp, kq) >= _LARGE
    near = t.abs() < _NEAR
    safe_p = torch.where(big, torch.full_like(kp, _LARGE), kp)
    direct = (
        delta * _one_minus_a(kp)
        + torch.log(torch.special.i0e(kq))
        - torch.log(torch.special.i0e(kp))
    )
    out = torch.where(near, _taylor_bregman(safe_p, torch.where(big, 0 * delta, delta)), direct)
    kpb = torch.where(big, kp, torch.full_like(kp, _LARGE))
    kqb = torch.where(big, kq, torch.full_like(kq, _LARGE))
    asym = _asymptotic_bregman(kpb, kqb, torch.where(big, delta, 0 * delta))
    out = torch.where(big, asym, out)
    small = torch.maximum(kp, kq) < _SMALL
    out = torch.where(small, _small_bregman(kp, torch.where(small, delta, 0 * delta)), out)
    return out.clamp_min(0)


def von_mises_kl(
    loc_p: torch.Tensor, conc_p: torch.Tensor, loc_q: torch.Tensor, conc_q: torch.Tensor
) -> torch.Tensor:
    r"""Batchwise KL(VonMises(μ_p, κ_p) ‖ VonMises(μ_q, κ_q)), computed in float64.

    .. math:: D(\kappa_q, \kappa_p) + 2 A(\kappa_p)\,\kappa_q \sin^2\frac{\mu_p - \mu_q}2

    (module docstring). Both terms ≥ 0; the location difference and the κ difference are
    formed directly.

    Args:
        loc_p, conc_p, loc_q, conc_q: locations (real) and concentrations (> 0), broadcastable.

    Returns:
        Tensor of the broadcast shape (dtype of the inputs), ≥ 0.
        Reference: ``docs/kl/von_mises.md``.
    """
    dtype = torch.promote_types(loc_p.dtype, conc_p.dtype)
    mp, kp, mq, kq = (x.double() for x in torch.broadcast_tensors(loc_p, conc_p, loc_q, conc_q))
    a = torch.special.i1e(kp) / torch.special.i0e(kp)
    angular = 2 * a * kq * torch.sin(0.5 * (mp - mq)) ** 2
    return (_log_i0_bregman(kp, kq) + angular).to(dtype)


@register_kl(VonMises, VonMises)
def _kl_von_mises_von_mises(p: VonMises, q: VonMises) -> torch.Tensor:
    """Batchwise KL(p ‖ q) for von Mises p, q: :func:`von_mises_kl`.

    Result shape: broadcast of the batch shapes. Reference: ``docs/kl/von_mises.md``.
    """
    return von_mises_kl(p.loc, p.concentration, q.loc, q.concentration)
