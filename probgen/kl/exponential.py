r"""Closed-form KL divergences between the Exponential and Gamma families: Exponential ‖ Gamma and
Gamma ‖ Exponential (Exponential(λ) = Gamma(1, λ)).

Each is the rate part plus the shape part of the Gamma ‖ Gamma split (:mod:`probgen.kl.gamma`),
both ≥ 0, with the shape fixed at 1 on the Exponential's side:

.. math::

    \mathrm{KL}(\mathrm{Exp}(\lambda) \,\|\, \Gamma(\alpha, \beta))
    = \alpha\,(\rho - 1 - \log\rho)
      + \bigl[\log\Gamma(\alpha) + (1 + \gamma)(\alpha - 1) - \alpha\log\alpha\bigr],
    \qquad \rho = \frac{\beta}{\lambda\alpha}.

Each is evaluated by the cheapest form whose rounding bound meets the target of the dtype
(:func:`probgen.kl.special.fast_or_stable`), the rest redone by a stabler one. Derivations:
``docs/kl/gamma_beta.md``.
"""

from __future__ import annotations

import torch
from torch.distributions import Exponential, Gamma

from probgen.kl.gamma import (
    _EULER_GAMMA,
    _EXP_GAMMA_ULPS,
    _gamma_kl_in,
    _gamma_textbook,
    _inplace,
    _kept_or,
    gamma_kl,
)
from probgen.kl.registry import register_kl
from probgen.kl.special import (
    _ULPS,
    Selection,
    gather,
    working_dtype,
)

__all__: list[str] = []


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
