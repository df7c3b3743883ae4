r"""Closed-form KL divergences of the Gamma family: Gamma, Exponential, Weibull → Gamma.

Every KL is written as a sum of terms that are each ≥ 0 (derivations: ``docs/kl/gamma_beta.md``):

.. math::

    \mathrm{KL}(\Gamma(\alpha_p, \beta_p) \,\|\, \Gamma(\alpha_q, \beta_q))
    = \underbrace{\tfrac12 g\!\left(\tfrac{\alpha_q - \alpha_p}{\alpha_p}\right)
      + D_\varphi(\alpha_q, \alpha_p)}_{\text{shape}}
    + \alpha_q\, g(\rho - 1), \qquad
    \rho = \frac{\beta_q\,\alpha_p}{\beta_p\,\alpha_q},

with :math:`g(u) = u - \log(1 + u)` and :math:`D_\varphi` the Bregman divergence of Binet's
function (:mod:`probgen.kl.special`). The split is the Pythagorean identity of the moment
projection of p onto :math:`\{\Gamma(\alpha_q, \beta)\}_\beta`, which matches the mean:
:math:`\beta^* = \beta_p\alpha_q/\alpha_p`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.distributions import Beta, Exponential, Gamma, Kumaraswamy, Weibull

from probgen.kl.discrete_terms import grad_needed
from probgen.kl.registry import register_kl
from probgen.kl.special import (
    _ULPS,
    Selection,
    fast_or_stable,
    g_of,
    gamma_shape_kl,
    gather,
    lgamma_bregman,
    working_dtype,
    x_minus_log1p_ratio,
)
from probgen.kl.stable import expm1_minus_x, one_plus_x_log1p_minus_x

__all__ = ["gamma_kl", "weibull_gamma_kl"]

_EULER_GAMMA = 0.5772156649015329
# float32 split forms (rate part + shape part summed in float64): error ≤ 2·eps·M.
_EXP_GAMMA_ULPS = 2


def gamma_kl(
    alpha_p: torch.Tensor, rate_p: torch.Tensor, alpha_q: torch.Tensor, rate_q: torch.Tensor
) -> torch.Tensor:
    r"""Batchwise KL(Gamma(α_p, β_p) ‖ Gamma(α_q, β_q)) from the parameters (rates β).

    .. math::

        \tfrac12 g(t) + D_\varphi(\alpha_q, \alpha_p) + \alpha_q\, g(u + v + uv),
        \quad t = \tfrac{\alpha_q - \alpha_p}{\alpha_p},\
        u = \tfrac{\beta_q - \beta_p}{\beta_p},\ v = \tfrac{\alpha_p - \alpha_q}{\alpha_q},

    each term ≥ 0; the parameter differences are formed directly (exact when close). Where
    the textbook formula has no harmful cancellation (its rounding bound well below the
    target, :func:`probgen.kl.special.fast_or_stable`) it is kept, as it is cheaper; the
    stable form is evaluated on the other elements only. float32 input is first evaluated as
    the rate and shape parts :math:`\alpha_q g(\rho - 1) + U` (:func:`_gamma_gamma_split`),
    which fails its bound only for close concentrations (~3 % of generic elements, against
    ~15 % for the textbook formula in float32); the elements that fail are redone in float64,
    and stably where that fails too.

    Args:
        alpha_p, rate_p, alpha_q, rate_q: positive tensors, broadcastable.

    Returns:
        Tensor of the broadcast shape, ≥ 0. Reference: ``docs/kl/gamma_beta.md``.
    """
    params = alpha_p, rate_p, alpha_q, rate_q
    dtype = torch.promote_types(alpha_p.dtype, alpha_q.dtype)
    if dtype != torch.float32 or any(x.dtype != dtype for x in params):
        return _gamma_kl_in(working_dtype(dtype), dtype, *params)
    value, magnitude = _gamma_gamma_split(*params)

    def in_float64(selection: Selection) -> torch.Tensor:
        return _gamma_kl_in(torch.float64, dtype, *gather(selection, *params))

    return _kept_or(value, magnitude, in_float64, dtype, _EXP_GAMMA_ULPS)


def _gamma_gamma_split(
    alpha_p: torch.Tensor, rate_p: torch.Tensor, alpha_q: torch.Tensor, rate_q: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""float32 α_q·g(ρ − 1) + U, ρ = β_q α_p/(β_p α_q), with the shape part
    U = (α_p − α_q)ψ(α_p) − log Γ(α_p) + log Γ(α_q) − α_q log(α_q/α_p) + α_q − α_p ≥ 0, and a
    magnitude M of its rounding error (no autograd history).

    g as in :func:`_exponential_gamma_split` (ρ from three roundings: within 1.5·eps·(|ρ − 1|
    + |log ρ| + g)). U is summed in float64 from float64's ψ(α_p) and float32's log Γ (0.505
    ulp each): M = α_q(|ρ − 1| + |log ρ| + g) + |U| + |log Γ(α_p)| + |log Γ(α_q)|, error
    ≤ 2·eps·M. What is left is the float32 rounding of the two log Γ, which U (~(α_p − α_q)²)
    does not cover when the concentrations are close."""
    if _inplace(alpha_p, rate_p, alpha_q, rate_q):
        return _gamma_gamma_split_inplace(alpha_p, rate_p, alpha_q, rate_q)
    rho = rate_q * alpha_p / (rate_p * alpha_q)
    log_rho = torch.log(rho)
    x = rho - 1
    rate_part = x - log_rho
    lg_p, lg_q = torch.lgamma(alpha_p), torch.lgamma(alpha_q)
    a, b = alpha_p.double(), alpha_q.double()
    d = a - b
    shape = torch.log(b / a).mul_(b).add_(d).neg_().addcmul_(d, torch.digamma(a))
    shape = shape.add_(lg_q).sub_(lg_p).float()
    value = torch.addcmul(shape, alpha_q, rate_part)
    with torch.no_grad():
        magnitude = torch.add(x, log_rho).abs_().add_(rate_part).mul_(alpha_q)
        magnitude += shape.abs()
        magnitude += lg_p.abs()
        magnitude += lg_q.abs()
    return value, magnitude


def _gamma_gamma_split_inplace(
    alpha_p: torch.Tensor, rate_p: torch.Tensor, alpha_q: torch.Tensor, rate_q: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_gamma_gamma_split` for parameters of one shape, without autograd: the same
    operations, in place wherever a temporary is free."""
    rho, log_rho = rate_q * alpha_p, rate_p * alpha_q
    rho.div_(log_rho)
    torch.log(rho, out=log_rho)
    x = rho.sub_(1)
    magnitude = torch.add(x, log_rho).abs_()
    rate_part = log_rho.neg_().add_(x)
    magnitude.add_(rate_part).mul_(alpha_q)
    lg_p, lg_q = torch.lgamma(alpha_p), torch.lgamma(alpha_q)
    a, b = alpha_p.double(), alpha_q.double()
    shape = torch.div(b, a).log_().mul_(b)
    psi = torch.digamma(a)
    d = a.sub_(b)
    shape = shape.add_(d).neg_().addcmul_(d, psi).add_(lg_q).sub_(lg_p).float()
    magnitude += torch.abs(shape, out=x)
    magnitude += torch.abs(lg_p, out=x)
    magnitude += torch.abs(lg_q, out=x)
    return shape.addcmul_(alpha_q, rate_part), magnitude


def _gamma_kl_in(
    work: torch.dtype,
    dtype: torch.dtype,
    alpha_p: torch.Tensor,
    rate_p: torch.Tensor,
    alpha_q: torch.Tensor,
    rate_q: torch.Tensor,
) -> torch.Tensor:
    """:func:`gamma_kl` evaluated in ``work`` for the target of ``dtype``."""
    value, magnitude = _gamma_textbook(*(x.to(work) for x in (alpha_p, rate_p, alpha_q, rate_q)))

    def stable(selection: Selection) -> torch.Tensor:
        params = (x.to(work) for x in gather(selection, alpha_p, rate_p, alpha_q, rate_q))
        return _gamma_kl_stable(*params)

    return fast_or_stable(value, magnitude, stable, dtype)


def _gamma_textbook(
    ap: torch.Tensor,
    bp: torch.Tensor,
    aq: torch.Tensor,
    bq: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's formula, (α_p − α_q)ψ(α_p) − log Γ(α_p) + log Γ(α_q) + α_q log(β_p/β_q)
    + α_p(β_q − β_p)/β_p, with few temporaries, and its magnitude M (no autograd history)."""
    log_ratio = torch.log(bp / bq)  # error ≤ eps·(1 + |log ratio|)
    d = ap - aq
    psi = torch.digamma(ap)
    cross = d * psi
    lg_p, lg_q = torch.lgamma(ap), torch.lgamma(aq)
    rate = aq * log_ratio
    mean = ap * (bq - bp) / bp
    value = cross + mean
    value += rate
    value -= lg_p
    value += lg_q
    inplace = not grad_needed(ap, bp, aq, bq) and mean.shape == value.shape
    with torch.no_grad():
        if not inplace:
            magnitude = mean.abs() + cross.abs().mul_(2)  # the shape of value
            magnitude += d.abs()
            magnitude += lg_p.abs()
            magnitude += lg_q.abs()
            magnitude.addcmul_(aq, log_ratio.abs().add_(1), value=2)
            return value, magnitude
        # The same sums in the temporaries' own buffers (all fresh, none saved for autograd).
        magnitude = mean.abs_().add_(cross.abs_(), alpha=2)
        magnitude += d.abs_()
        magnitude += lg_p.abs_()
        magnitude += lg_q.abs_()
        magnitude.addcmul_(aq, log_ratio.abs_().add_(1), value=2)
    return value, magnitude


def _gamma_kl_stable(
    alpha_p: torch.Tensor, rate_p: torch.Tensor, alpha_q: torch.Tensor, rate_q: torch.Tensor
) -> torch.Tensor:
    u = (rate_q - rate_p) / rate_p
    v = (alpha_p - alpha_q) / alpha_q
    rho_minus_1 = u + v + u * v
    log_rho = torch.log(rate_q) - torch.log(rate_p) + torch.log(alpha_p) - torch.log(alpha_q)
    rate_part = alpha_q * x_minus_log1p_ratio(rho_minus_1, log_rho)
    return gamma_shape_kl(alpha_p, alpha_q) + rate_part


@register_kl(Gamma, Gamma)
def _kl_gamma_gamma(p: Gamma, q: Gamma) -> torch.Tensor:
    """Batchwise KL(p ‖ q) for Gamma p, q: :func:`gamma_kl`.

    Result shape: broadcast of the batch shapes. Reference: ``docs/kl/gamma_beta.md``.
    """
    return gamma_kl(p.concentration, p.rate, q.concentration, q.rate)


@register_kl(Exponential, Gamma)
def _kl_exponential_gamma(p: Exponential, q: Gamma) -> torch.Tensor:
    r"""Batchwise KL(p ‖ q) for Exponential(λ) = Gamma(1, λ) p and Gamma(α, β) q.

    .. math::

        \alpha\,(\rho - 1 - \log\rho) + \bigl[\log\Gamma(\alpha) + (1 + \gamma)(\alpha - 1)
        - \alpha\log\alpha\bigr], \qquad \rho = \frac{\beta}{\lambda\alpha},

    the rate part and the shape part KL(Gamma(1, 1) ‖ Gamma(α, α)), each ≥ 0. It is evaluated
    in the input dtype where its rounding bound allows
    (:func:`probgen.kl.special.fast_or_stable`); float32 elements that fail are redone in
    float64, float64 ones by :func:`gamma_kl`.

    Result shape: broadcast of the batch shapes. Reference: ``docs/kl/gamma_beta.md``.
    """
    params = p.rate, q.concentration, q.rate
    dtype = torch.promote_types(params[0].dtype, params[1].dtype)
    same = all(x.dtype == dtype for x in params)
    work = dtype if dtype == torch.float32 and same else working_dtype(dtype)
    return _exponential_gamma(*(x.to(work) for x in params), dtype)


def _exponential_gamma(
    rate_p: torch.Tensor, alpha_q: torch.Tensor, rate_q: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """The KL in the dtype of the parameters, kept where its rounding bound meets the target of
    ``dtype``. float32: :func:`_exponential_gamma_split`, the elements that fail redone in
    float64. float64: torch's formula (:func:`_exponential_gamma_textbook`, one logarithm
    fewer), then the split form, then :func:`gamma_kl` on what fails both."""
    if rate_p.dtype == torch.float32:
        value, magnitude = _exponential_gamma_split(rate_p, alpha_q, rate_q)

        def stable(selection: Selection) -> torch.Tensor:
            rp, aq, rq = gather(selection, rate_p, alpha_q, rate_q)
            return _exponential_gamma(rp.double(), aq.double(), rq.double(), dtype)

        return _kept_or(value, magnitude, stable, dtype, _EXP_GAMMA_ULPS)
    value, magnitude = _exponential_gamma_textbook(rate_p, alpha_q, rate_q)

    def split(selection: Selection) -> torch.Tensor:
        rp, aq, rq = gather(selection, rate_p, alpha_q, rate_q)
        value, magnitude = _exponential_gamma_split(rp, aq, rq)

        def stable(selection: Selection) -> torch.Tensor:
            return gamma_kl(_one(rp), *gather(selection, rp, aq, rq))

        return _kept_or(value, magnitude, stable, dtype, _ULPS)

    return _kept_or(value, magnitude, split, dtype, _ULPS)


def _kept_or(
    value: torch.Tensor,
    magnitude: torch.Tensor,
    stable: Callable[[Selection], torch.Tensor],
    dtype: torch.dtype,
    ulps: float,
) -> torch.Tensor:
    """:func:`probgen.kl.special.fast_or_stable` with ``magnitude`` of ``value``'s shape."""
    if magnitude.shape != value.shape:
        magnitude = magnitude.expand(value.shape).clone()
    return fast_or_stable(value, magnitude, stable, dtype, ulps)


def _exponential_gamma_textbook(
    rate_p: torch.Tensor, alpha_q: torch.Tensor, rate_q: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's r − α log r + log Γ(α) + γ(α − 1) − 1 (r = β/λ) and its magnitude M (in the
    buffers of log r and log Γ(α) for parameters of one shape without autograd)."""
    inplace = _inplace(rate_p, alpha_q, rate_q)
    ratio = rate_q / rate_p
    log_ratio = torch.log(ratio)
    lg = torch.lgamma(alpha_q)
    value = torch.addcmul(ratio, alpha_q, log_ratio, value=-1)
    value += lg
    value.add_(alpha_q, alpha=_EULER_GAMMA)
    value -= 1 + _EULER_GAMMA
    with torch.no_grad():
        size, lg_size = (log_ratio.abs_(), lg.abs_()) if inplace else (log_ratio.abs(), lg.abs())
        magnitude = size.add_(1).mul_(2).mul_(alpha_q)
        magnitude += ratio
        magnitude += lg_size
        magnitude.add_(alpha_q, alpha=_EULER_GAMMA).add_(1 + _EULER_GAMMA)
    return value, magnitude


def _exponential_gamma_split(
    rate_p: torch.Tensor, alpha_q: torch.Tensor, rate_q: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""α·g + S, g = ρ − 1 − log ρ, S = log Γ(α) + (1 + γ)(α − 1) − α log α, and a magnitude M
    of its rounding error (no autograd history).

    ρ − 1 and log ρ come from the same rounded ρ (two roundings, δρ ≤ eps·ρ), so g is off by
    at most eps·|ρ − 1| from ρ (g'(ρ)·δρ), eps·|log ρ| from the logarithm (1 ulp) and eps·g/2
    from the subtraction: the rate part α·g is within eps·α(|ρ − 1| + |log ρ| + g) + eps·α·g/2
    with its product, and ρ − 1, log ρ have the same sign (M's rate term in one temporary).

    S cancels to (π²/6 − 1)(α − 1)²/2 near α = 1, below the float32 rounding of its terms
    (~3·eps·|α − 1|); for float32 input it is therefore summed in float64 from float32's
    log Γ(α) (0.505 ulp of |log Γ(α)| ≈ γ|α − 1|): M = α(|ρ − 1| + |log ρ| + g) + |S| +
    |log Γ(α)|, and the error, with the rounding of S to float32 and of the final sum, is
    ≤ 1.5·eps·M. float64 input has S in float64 and M's shape term |log Γ(α)| +
    (1 + γ)|α − 1| + α|log α| (α − 1 and log α have the same sign); the rare elements that fail
    (α ≈ 1 and ρ ≈ 1 together) are redone by :func:`gamma_kl`."""
    if alpha_q.dtype == torch.float32 and _inplace(rate_p, alpha_q, rate_q):
        return _exponential_gamma_split_float32_inplace(rate_p, alpha_q, rate_q)
    rho = rate_q / (rate_p * alpha_q)
    log_rho = torch.log(rho)
    x = rho - 1
    rate_part = x - log_rho
    lg = torch.lgamma(alpha_q)
    if alpha_q.dtype == torch.float32:
        a = alpha_q.double()
        shape = torch.add(lg, a - 1, alpha=1 + _EULER_GAMMA).sub_(torch.log(a).mul_(a)).float()
        value = torch.addcmul(shape, alpha_q, rate_part)
        with torch.no_grad():
            magnitude = torch.add(x, log_rho).abs_().add_(rate_part).mul_(alpha_q)
            magnitude += shape.abs()
            magnitude += lg.abs()
        return value, magnitude
    t = alpha_q - 1
    a_log_a = alpha_q * torch.log(alpha_q)
    value = torch.addcmul(lg, alpha_q, rate_part)
    value.add_(t, alpha=1 + _EULER_GAMMA).sub_(a_log_a)
    with torch.no_grad():
        magnitude = torch.add(x, log_rho).abs_().add_(rate_part).mul_(alpha_q)
        magnitude += lg.abs()
        magnitude += torch.add(a_log_a, t, alpha=1 + _EULER_GAMMA).abs_()
    return value, magnitude


def _exponential_gamma_split_float32_inplace(
    rate_p: torch.Tensor, alpha_q: torch.Tensor, rate_q: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_exponential_gamma_split` for float32 parameters of one shape, without autograd:
    the same operations, in place wherever a temporary is free (half as many fresh buffers)."""
    rho = rate_p * alpha_q
    torch.div(rate_q, rho, out=rho)
    rate_part = torch.log(rho)
    x = rho.sub_(1)
    magnitude = torch.add(x, rate_part).abs_()
    rate_part.neg_().add_(x)
    magnitude.add_(rate_part).mul_(alpha_q)
    lg = torch.lgamma(alpha_q)
    a = alpha_q.double()
    a_log_a = torch.log(a).mul_(a)
    shape = a.sub_(1).mul_(1 + _EULER_GAMMA).sub_(a_log_a).add_(lg).float()
    magnitude += torch.abs(shape, out=x)
    magnitude += torch.abs(lg, out=x)
    return shape.addcmul_(alpha_q, rate_part), magnitude


@register_kl(Gamma, Exponential)
def _kl_gamma_exponential(p: Gamma, q: Exponential) -> torch.Tensor:
    r"""Batchwise KL(p ‖ q) for Gamma(α, β) p and Exponential(λ) = Gamma(1, λ) q.

    .. math::

        (\rho - 1 - \log\rho) + \bigl[(\alpha - 1)\psi(\alpha) - \log\Gamma(\alpha) + \log\alpha
        + 1 - \alpha\bigr], \qquad \rho = \frac{\lambda\alpha}{\beta},

    the rate part and the shape part KL(Gamma(α, α) ‖ Gamma(1, 1)), each ≥ 0: float32 input
    by :func:`_gamma_exponential_split` where its rounding bound allows
    (:func:`probgen.kl.special.fast_or_stable`), the other elements and other dtypes by
    :func:`gamma_kl`.

    Result shape: broadcast of the batch shapes. Reference: ``docs/kl/gamma_beta.md``.
    """
    params = alpha, rate, lam = p.concentration, p.rate, q.rate
    if all(x.dtype == torch.float64 for x in params):
        return _gamma_exponential_float64(*params)
    if any(x.dtype != torch.float32 for x in params):
        return gamma_kl(alpha, rate, _one(lam), lam)
    value, magnitude = _gamma_exponential_split(*params)

    def in_float64(selection: Selection) -> torch.Tensor:
        ap, bp, bq = gather(selection, *params)
        return _gamma_kl_in(torch.float64, torch.float32, ap, bp, _one(ap), bq)

    return _kept_or(value, magnitude, in_float64, torch.float32, _EXP_GAMMA_ULPS)


def _gamma_exponential_float64(
    alpha: torch.Tensor, rate: torch.Tensor, lam: torch.Tensor
) -> torch.Tensor:
    """float64: torch's formula where its rounding bound allows, then the rate and shape parts
    (:func:`_gamma_exponential_split64`, which keep close laws with α not too near 1 and cost
    a few operations on the elements left), then :func:`gamma_kl`."""
    value, magnitude = _gamma_textbook(alpha, rate, _one(lam), lam)

    def split(selection: Selection) -> torch.Tensor:
        ap, bp, bq = gather(selection, alpha, rate, lam)
        value, magnitude = _gamma_exponential_split64(ap, bp, bq)

        def stable(selection: Selection) -> torch.Tensor:
            a, b, r = gather(selection, ap, bp, bq)
            return gamma_kl(a, b, _one(r), r)

        return _kept_or(value, magnitude, stable, torch.float64, _ULPS)

    return _kept_or(value, magnitude, split, torch.float64, _ULPS)


def _gamma_exponential_split64(
    alpha: torch.Tensor, rate: torch.Tensor, lam: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""float64 g + T (as in :func:`_gamma_exponential_split`, every term in float64) and M:
    the rate part's α-free form of it, plus |α − 1|(|ψ(α)| + 1) (the product and torch's
    digamma, accurate to ~7 ulps of max(|ψ|, 1)), |log Γ(α)|, |log α| and |α − 1|."""
    rho = lam * alpha / rate
    log_rho = torch.log(rho)
    x = rho - 1
    rate_part = x - log_rho
    lg, psi, log_a = torch.lgamma(alpha), torch.digamma(alpha), torch.log(alpha)
    t = alpha - 1
    value = (log_a - t).addcmul_(t, psi).sub_(lg).add_(rate_part)
    with torch.no_grad():
        magnitude = torch.add(x, log_rho).abs_().add_(rate_part)
        magnitude.addcmul_(t.abs(), psi.abs().add_(2))
        magnitude += lg.abs()
        magnitude += log_a.abs()
    return value, magnitude


def _gamma_exponential_split(
    alpha: torch.Tensor, rate: torch.Tensor, lam: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""float32 g + T, g = ρ − 1 − log ρ, T = (α − 1)ψ(α) − log Γ(α) + log α + 1 − α, and a
    magnitude M of its rounding error (no autograd history).

    As in :func:`_exponential_gamma_split`: g is within eps·(|ρ − 1| + |log ρ| + g) + eps·g/2.
    T cancels to (π²/6 − 1)(α − 1)²/2 near α = 1, so it is summed in float64, from float64's
    ψ(α) (what float32 input uses in :func:`gamma_kl` too) and float32's log Γ(α) (0.505 ulp):
    M = |ρ − 1| + |log ρ| + g + |T| + |log Γ(α)|, error ≤ 1.5·eps·M."""
    if _inplace(alpha, rate, lam):
        return _gamma_exponential_split_inplace(alpha, rate, lam)
    rho = lam * alpha / rate
    log_rho = torch.log(rho)
    x = rho - 1
    rate_part = x - log_rho
    lg = torch.lgamma(alpha)
    a = alpha.double()
    t = a - 1
    shape = torch.log(a).sub_(t).addcmul_(t, torch.digamma(a)).sub_(lg).float()
    value = shape + rate_part
    with torch.no_grad():
        magnitude = torch.add(x, log_rho).abs_().add_(rate_part)
        magnitude += shape.abs()
        magnitude += lg.abs()
    return value, magnitude


def _inplace(*params: torch.Tensor) -> bool:
    """Whether temporaries may be overwritten: no autograd, and one shape (no broadcasting)."""
    return not grad_needed(*params) and all(x.shape == params[0].shape for x in params)


def _gamma_exponential_split_inplace(
    alpha: torch.Tensor, rate: torch.Tensor, lam: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_gamma_exponential_split` for parameters of one shape, without autograd: the same
    operations, in place wherever a temporary is free."""
    rho = lam * alpha
    rho.div_(rate)
    rate_part = torch.log(rho)
    x = rho.sub_(1)
    magnitude = torch.add(x, rate_part).abs_()
    rate_part.neg_().add_(x)
    magnitude += rate_part
    lg = torch.lgamma(alpha)
    a = alpha.double()
    psi = torch.digamma(a)
    shape = torch.log(a)
    t = a.sub_(1)
    shape = shape.sub_(t).addcmul_(t, psi).sub_(lg).float()
    magnitude += torch.abs(shape, out=x)
    magnitude += torch.abs(lg, out=x)
    return shape.add_(rate_part), magnitude


def _one(like: torch.Tensor) -> torch.Tensor:
    """A 0-dim 1 (broadcasts; keeps lgamma/digamma of the Exponential's shape off the batch)."""
    return torch.ones((), dtype=like.dtype, device=like.device)


def weibull_gamma_kl(
    scale: torch.Tensor, concentration: torch.Tensor, alpha: torch.Tensor, rate: torch.Tensor
) -> torch.Tensor:
    r"""Batchwise KL(Weibull(λ, k) ‖ Gamma(α, β)), computed in float64.

    With s = 1/k, :math:`E[\log x] = \log\lambda - \gamma s`, :math:`E[x] = \lambda\Gamma(1+s)`
    and the Weibull entropy :math:`\gamma(1 - s) + \log(\lambda s) + 1`,

    .. math::

        \mathrm{KL} = \log k + \log\Gamma(\alpha) - \alpha\log(\beta\lambda) + \gamma(\alpha s - 1)
        - 1 + \beta\lambda\,\Gamma(1 + s)
        = \alpha\, e(\nu) + L(1, \alpha) - h(\alpha - 1) + \alpha L(2, 1 + s) + g(s - 1)
        + (\alpha - 1)(s - 1),

    with :math:`\nu = \log(\beta\lambda\Gamma(1+s)/\alpha)` (the rate mismatch; e(ν) = e^ν − 1 − ν),
    :math:`L(x, x') = \log\Gamma(x') - \log\Gamma(x) - (x' - x)\psi(x)`. All terms but the last
    are ≥ 0; the last one is what keeps the sum at 0 for Weibull(λ, 1) = Gamma(1, 1/λ).

    Known limitation (float64): within ~1e-6 relative of that equal-law point the KL is
    O(ε²), while ν carries the rounding of log β + log λ + log Γ(1 + s) − log α, an absolute
    error of a few ulp of the largest of those logarithms; the relative error then grows as
    the KL shrinks (measured 1.1e-10 at ε = 1e-6, 4e-3 at ε = 1e-12 with λ = 1e-30), over the
    1e-10 target. Reaching it would take ν in extended precision. float32 meets its target.

    Args:
        scale, concentration: the Weibull's λ, k > 0. alpha, rate: the Gamma's α, β > 0.

    Returns:
        Tensor of the broadcast shape (dtype of the inputs), ≥ 0.
    """
    dtype = torch.promote_types(scale.dtype, alpha.dtype)
    lam, k, a, b = (x.double() for x in torch.broadcast_tensors(scale, concentration, alpha, rate))
    s = 1.0 / k
    one = torch.ones_like(a)
    nu = torch.log(b) + torch.log(lam) + torch.lgamma(1 + s) - torch.log(a)
    total = (
        a * expm1_minus_x(nu)
        + lgamma_bregman(one, a)
        - one_plus_x_log1p_minus_x(a - 1)
        + a * lgamma_bregman(2 * one, 1 + s)
        + g_of(s, one, s - 1)
        + (a - 1) * (s - 1)
    )
    return total.clamp_min(0).to(dtype)


@register_kl(Weibull, Gamma)
def _kl_weibull_gamma(p: Weibull, q: Gamma) -> torch.Tensor:
    """Batchwise KL(p ‖ q) for Weibull p and Gamma q: :func:`weibull_gamma_kl`.

    Result shape: broadcast of the batch shapes. Reference: ``docs/kl/gamma_beta.md``.
    """
    return weibull_gamma_kl(p.scale, p.concentration, q.concentration, q.rate)


def _infinity(p, q) -> torch.Tensor:
    shape = torch.broadcast_shapes(p.batch_shape, q.batch_shape)
    dtype = torch.promote_types(p.mean.dtype, q.mean.dtype)
    return torch.full(shape, math.inf, dtype=dtype, device=p.mean.device)


@register_kl(Weibull, Beta)
@register_kl(Weibull, Kumaraswamy)
@register_kl(Gamma, Kumaraswamy)
@register_kl(Exponential, Kumaraswamy)
def _kl_positive_unit_interval_infinity(p, q) -> torch.Tensor:
    """Batchwise KL(p ‖ q) = +inf: p has mass on (1, ∞), where q (support (0, 1)) has none.

    Result shape: broadcast of the batch shapes.
    """
    return _infinity(p, q)
