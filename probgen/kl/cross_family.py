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
"""

from __future__ import annotations

import math

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

from probgen.kl.registry import KLFn, register_kl

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


for _q in (ContinuousBernoulli, Exponential, Gamma, Normal, Uniform):
    register_kl(Beta, _q)(in_float64(_torch_kl._KL_REGISTRY[Beta, _q]))


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
