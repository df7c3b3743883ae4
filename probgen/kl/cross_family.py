r"""Closed-form KL between different families that torch gets wrong.

torch's own cross-family pairs are kept where they pass the audit (``probgen check-kl --torch``,
``docs/kl/audit.md``). Replaced here:

* **Uniform ‖ ContinuousBernoulli** and **ContinuousBernoulli ‖ Uniform**: torch tests the
  supports with ``ge``/``le`` where ``gt``/``lt`` is right, and returns +inf for finite KLs, e.g.
  KL(U(0, 1) ‖ CB(0.3)). The KL is +inf exactly when the first distribution puts mass outside the
  second's support.
* **Beta ‖ {ContinuousBernoulli, Exponential, Gamma, Normal, Uniform}** in float32: torch builds
  them from ``p.entropy()``, a difference of log-gamma values of the size of the
  concentrations, which loses all digits in float32 for concentrations ~1e4 (error 0.017 at
  Beta(3e4, 2e4)). Evaluated in float64 and rounded back, they are within float32's target.
  For all but Gamma, that float64 evaluation takes log Γ(a), log Γ(b) of the (float32)
  concentrations from torch's float32 lgamma (measured ≤ 0.505
  ulp; a third of float64's cost, while float64 digamma costs what float32's does), kept where
  their rounding eps₃₂·(|log Γ(a)| + |log Γ(b)|) is below a quarter of float32's target and
  recomputed in float64 elsewhere (large concentrations, KL near 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.distributions import (
    Beta,
    ContinuousBernoulli,
    Distribution,
    Exponential,
    Gamma,
    Normal,
    Uniform,
)
from torch.distributions import kl as _torch_kl
from torch.distributions.utils import lazy_property

from probgen.kl.continuous_bernoulli import _log_partition
from probgen.kl.registry import KLFn, register_kl
from probgen.kl.special import gather

__all__ = ["in_float64"]


def _to_float64(d: Distribution) -> Distribution:
    params, alternatives = {}, []
    for name in d.arg_constraints:
        if isinstance(getattr(type(d), name, None), lazy_property):
            alternatives.append(name)
        else:
            params[name] = getattr(d, name).to(torch.float64)
    # Of the alternative parametrisations (probs/logits), the one given at construction is the
    # first in __dict__; the others are cached there only once read.
    given = [name for name in d.__dict__ if name in alternatives][:1]
    params.update({name: getattr(d, name).to(torch.float64) for name in given})
    return type(d)(**params, validate_args=False)


def in_float64(fn: KLFn) -> KLFn:
    """``fn`` evaluated in float64 for lower-precision inputs, its result cast back."""

    def wrapped(p: Distribution, q: Distribution) -> torch.Tensor:
        dtype = torch.promote_types(p.mean.dtype, q.mean.dtype)
        if dtype == torch.float64:
            return fn(p, q)
        return fn(_to_float64(p), _to_float64(q)).to(dtype)

    wrapped.__name__ = f"{fn.__name__}_in_float64"
    wrapped.__doc__ = f"Batchwise KL(p ‖ q): torch's ``{fn.__name__}``, evaluated in float64."
    return wrapped


register_kl(Beta, Gamma)(in_float64(_torch_kl._KL_REGISTRY[Beta, Gamma]))


def _given_names(d: Distribution) -> list[str]:
    """The parameters ``d`` was built from (of probs/logits, the one given: the first cached)."""
    lazy = [n for n in d.arg_constraints if isinstance(getattr(type(d), n, None), lazy_property)]
    given = [n for n in d.__dict__ if n in lazy][:1]
    return [n for n in d.arg_constraints if n not in lazy] + given


# −E_p[log q(x)] from q, E_p[x] and a₀ = a + b, all in float64.
_Rest = Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor]

# float32 targets (relative 1e-4, absolute 1e-7 below 1e-3), a quarter of each, and the measured
# accuracy of torch's float32 lgamma: ≤ 0.505 ulp of |log Γ| (5e6 points on 1e-6 … 1e6).
_RTOL, _ATOL = 2.5e-5, 2.5e-8
_LGAMMA_F32_ULPS = 1.0


def _beta_float32(q_type: type, rest: _Rest) -> KLFn:
    """KL(Beta ‖ q) for float32 input: torch's formula in float64, except log Γ(a), log Γ(b)
    of the (float32) concentrations, taken from torch's float32 lgamma (3× cheaper than
    float64's; float64 digamma costs the same as float32's) where their rounding,
    ``eps₃₂·(|log Γ(a)| + |log Γ(b)|)``, is below a quarter of the target."""
    torch_fn = _torch_kl._KL_REGISTRY[Beta, q_type]

    def kl(p: Beta, q: Distribution) -> torch.Tensor:
        conc = p._dirichlet.concentration  # the Beta's (a, b) as one tensor, no stacking
        dtype = torch.promote_types(conc.dtype, getattr(q, _given_names(q)[0]).dtype)
        if dtype == torch.float64:
            return torch_fn(p, q)
        lg32 = torch.lgamma(conc)
        c = conc.to(torch.float64)
        a, b = c.unbind(-1)
        a0 = a + b  # exact: the sum of two float32 numbers, in float64
        # −H(p) = Σ(aᵢ − 1)ψ(aᵢ) + (2 − a₀)ψ(a₀) − Σ log Γ(aᵢ) + log Γ(a₀)  (torch's entropy);
        # a sum over the last dimension of size 2 is slow in torch: the two columns are added.
        terms = (c - 1.0).mul_(torch.digamma(c)).sub_(lg32)
        neg_h = terms[..., 0] + terms[..., 1]
        neg_h += torch.lgamma(a0)
        neg_h += (2.0 - a0).mul_(torch.digamma(a0))
        value = neg_h + rest(_to_float64(q), a / a0, a0)
        with torch.no_grad():
            lg_abs = lg32.abs()
            bound = (lg_abs[..., 0] + lg_abs[..., 1]).mul_(
                _LGAMMA_F32_ULPS * torch.finfo(conc.dtype).eps
            )
            redo = ~(bound <= (value.abs() * _RTOL).clamp_min_(_ATOL))
            if redo.shape != value.shape:
                redo = redo.expand(value.shape)
        if bool(redo.any()):
            (cm,) = gather(redo, conc, event_dims=1)
            correction = torch.lgamma(cm.to(torch.float64)) - torch.lgamma(cm).to(torch.float64)
            value = value.masked_scatter(redo, value[redo] - correction.sum(-1))
        return value.to(dtype).clamp_min_(0)

    kl.__name__ = f"_kl_beta_{q_type.__name__.lower()}"
    kl.__doc__ = (
        f"Batchwise KL(p ‖ q) for Beta p and {q_type.__name__} q: torch's formula, float32 "
        "input evaluated in float64 (module docstring). Result shape: broadcast of the batch "
        "shapes."
    )
    return kl


def _exponential_rest(q: Exponential, mean: torch.Tensor, a0: torch.Tensor) -> torch.Tensor:
    """−E_p[log q(x)] = λ·E[x] − log λ."""
    return q.rate * mean - q.rate.log()


def _uniform_rest(q: Uniform, mean: torch.Tensor, a0: torch.Tensor) -> torch.Tensor:
    """−E_p[log q(x)] = log(b − a), +inf where [a, b] does not cover [0, 1]."""
    log_width = (q.high - q.low).log()
    return torch.where((q.low > 0) | (q.high < 1), math.inf, log_width)


def _normal_rest(q: Normal, mean: torch.Tensor, a0: torch.Tensor) -> torch.Tensor:
    """−E_p[log q(x)] = ½log(2πσ²) + ((E[x] − μ)² + Var x)/(2σ²), Var x = E(1 − E)/(a₀ + 1)."""
    var = q.scale.pow(2)
    quad = ((mean - q.loc).pow(2) + mean * (1 - mean) / (a0 + 1)) / (2 * var)
    return 0.5 * (var * (2 * math.pi)).log() + quad


def _continuous_bernoulli_rest(
    q: ContinuousBernoulli, mean: torch.Tensor, a0: torch.Tensor
) -> torch.Tensor:
    """−E_p[log q(x)] = A(η) − η·E[x], η = logit λ, A(η) = log(expm1(η)/η)."""
    eta = q.logits
    return _log_partition(eta) - eta * mean


for _q, _rest in (
    (ContinuousBernoulli, _continuous_bernoulli_rest),
    (Exponential, _exponential_rest),
    (Normal, _normal_rest),
    (Uniform, _uniform_rest),
):
    register_kl(Beta, _q)(_beta_float32(_q, _rest))


@register_kl(Uniform, ContinuousBernoulli)
def _kl_uniform_continuous_bernoulli(p: Uniform, q: ContinuousBernoulli) -> torch.Tensor:
    r"""Batchwise KL(p ‖ q) for p = U(a, b), q = CB(λ).

    .. math::

        KL = -\log(b - a) - \tfrac{a + b}{2}\,\mathrm{logit}\,λ - \log(1 - λ) - \log C(λ),

    +inf where [a, b] is not inside [0, 1]. Shape: broadcast of the batch shapes. Reference:
    Loaiza-Ganem & Cunningham (2019), the continuous Bernoulli's density
    C(λ) λ^x (1 − λ)^{1−x}; torch's formula, with the support test corrected.
    """
    result = -p.entropy() - p.mean * q.logits - torch.log1p(-q.probs) - q._cont_bern_log_norm()
    outside = (p.high > 1) | (p.low < 0)
    return torch.where(outside, torch.full_like(result, math.inf), result)


@register_kl(ContinuousBernoulli, Uniform)
def _kl_continuous_bernoulli_uniform(p: ContinuousBernoulli, q: Uniform) -> torch.Tensor:
    r"""Batchwise KL(p ‖ q) for p = CB(λ), q = U(a, b): :math:`-H(p) + \log(b - a)`, +inf where
    [a, b] does not cover [0, 1]. Shape: broadcast of the batch shapes."""
    result = -p.entropy() + (q.high - q.low).log()
    outside = (q.low > 0) | (q.high < 1)
    return torch.where(outside, torch.full_like(result, math.inf), result)
