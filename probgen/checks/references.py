r"""Independent reference values of KL(p ‖ q), chosen per pair (one batch element at a time).

In the order tried:

* **point mass** (Pyro's ``Delta`` as p): :math:`\log p(v) - \log q(v)`, Pyro's convention.
* **support**: where p's support is not inside q's, KL = +∞ exactly.
* **mpmath closed form** for Gaussian pairs in :math:`\mathbb R^d` (``MultivariateNormal``,
  ``LowRankMultivariateNormal``, ``Independent(Normal, 1)``): the Gaussian KL
  :math:`\tfrac12[\operatorname{tr}(\Sigma_q^{-1}\Sigma_p) + \delta^\top\Sigma_q^{-1}\delta - d
  + \log\det\Sigma_q - \log\det\Sigma_p]` evaluated in 50-digit arithmetic from the parameters
  the distributions were built from, so that float64 rounding plays no part.
* **sum over independent dims**: ``Independent`` of univariate families, the sum of the
  univariate references of its components.
* **exact sum** for discrete p: over the finite support, or over :math:`\{0,\dots,N\}` with a
  ratio-test bound on the rest :math:`\sum_{x>N} t_x \le t_N\,r/(1-r)`, :math:`r` the largest
  ratio :math:`t_{x+1}/t_x` over the last terms.
* **quad**: ``scipy.integrate.quad`` for univariate continuous p, over the quantile
  :math:`u` of p (:math:`x = F_p^{-1}(u)`, so any scale is handled), or over x with break points
  where p has no quantile function. Log-densities come from ``scipy.stats`` where it has the
  family, else from torch's ``log_prob`` in float64 (the method says which).
* **monte carlo** otherwise: a seeded float64 estimate with ``z`` standard errors as its error.

Where :math:`\ell = \log q - \log p` is small (near-equal p and q), the sums and integrals use
:math:`\mathrm{KL} = E_p[e^{\ell} - 1 - \ell] + (1 - Q(\operatorname{supp} p))`, whose terms are
:math:`\ge 0` and lose no digits to cancellation; elsewhere :math:`E_p[-\ell]`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch.distributions import Distribution, Independent

from probgen.checks.densities import (
    _is_delta,
    _is_masked,
    as_float64,
    batch_elements,
    given_params,
    same_law_view,
)
from probgen.checks.integrals import exact_sum, quad
from probgen.checks.log_density import log_prob, support_interval
from probgen.checks.report import Reference

__all__ = ["reference_kl", "support_interval"]


def reference_kl(
    p: Distribution, q: Distribution, *, mc_samples: int = 100_000, seed: int = 0, z: float = 5.0
) -> Reference:
    """A reference for KL(p ‖ q) of single distributions (batch shape ``()``).

    Args:
        p, q: distributions with batch shape ``()`` (use
            :func:`probgen.checks.densities.batch_elements` for batches).
        mc_samples, seed, z: the Monte Carlo fallback's sample size, seed and the number of
            standard errors it reports as its error.

    Returns:
        :class:`Reference`; ``ok=False`` (never a pass) where none could be computed.
    """
    # scipy warns (log1p(-1), …) at the extremes it handles anyway: keep tests' warnings=error
    # for our own code.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return _reference_kl(p, q, mc_samples=mc_samples, seed=seed, z=z)


def _reference_kl(p: Distribution, q: Distribution, *, mc_samples: int, seed: int, z: float):
    p, q = as_float64(p), as_float64(q)
    if _is_delta(p):
        v = p.v
        lq = float(log_prob(q, v).sum())
        value = float(p.log_prob(v).sum()) - lq
        return Reference(value, 1e-15 * (1 + abs(value)), "point mass", "log p(v) − log q(v)")
    if _is_masked(p) and _is_masked(q):
        if not bool(torch.as_tensor(p._mask).all() and torch.as_tensor(q._mask).all()):
            return Reference(0.0, 0.0, "masked", "masked-out element: 0")
        return reference_kl(p.base_dist, q.base_dist, mc_samples=mc_samples, seed=seed, z=z)
    p, q = same_law_view(p), same_law_view(q)
    if p.event_shape != q.event_shape:
        return Reference.missing("none", "different event spaces")

    lo_p, hi_p = support_interval(p)
    lo_q, hi_q = support_interval(q)
    if lo_p < lo_q or hi_p > hi_q:
        return Reference(
            math.inf, 0.0, "support", f"supp p ⊄ supp q: [{lo_p}, {hi_p}] vs [{lo_q}, {hi_q}]"
        )

    from probgen.checks.gaussian import gaussian_kl_mpmath

    gaussian = gaussian_kl_mpmath(p, q)
    if gaussian is not None:
        return gaussian
    if isinstance(p, Independent) and isinstance(q, Independent):
        independent = _independent_sum(p, q, mc_samples=mc_samples, seed=seed, z=z)
        if independent is not None:
            return independent
    if p.event_shape == () and not isinstance(p, Independent):
        if p.support.is_discrete:
            return exact_sum(p, q)
        if not q.support.is_discrete:
            return quad(p, q)
    return _monte_carlo(p, q, mc_samples, seed, z)


def _independent_sum(p: Independent, q: Independent, **mc) -> Reference | None:
    bp, bq = p.base_dist, q.base_dist
    if bp.event_shape != () or bq.event_shape != ():
        return None
    shape = torch.broadcast_shapes(bp.batch_shape, bq.batch_shape)
    refs = [
        reference_kl(a, b, **mc)
        for a, b in zip(batch_elements(bp, shape), batch_elements(bq, shape), strict=True)
    ]
    if not all(r.ok for r in refs):
        bad = next(r for r in refs if not r.ok)
        return Reference.missing(bad.method, f"a component has no reference: {bad.detail}")
    methods = sorted({r.method for r in refs})
    value = math.fsum(r.value for r in refs)
    return Reference(
        value,
        math.fsum(r.error for r in refs),
        f"sum over independent dims of {', '.join(methods)}",
        f"{len(refs)} components",
    )


def _monte_carlo(p: Distribution, q: Distribution, n: int, seed: int, z: float) -> Reference:
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        x = p.sample((n,))
    finally:
        torch.random.set_rng_state(generator_state)
    ell = (log_prob(q, x) - log_prob(p, x)).reshape(n, -1).sum(-1)
    if bool(torch.isneginf(ell).any()):
        return Reference(math.inf, 0.0, "monte carlo", "q(x) = 0 at a sample of p")
    value = float(-ell.mean())
    se = float(ell.std() / math.sqrt(n))
    names = ", ".join(sorted(given_params(p)))
    return Reference(
        value,
        z * se,
        "monte carlo",
        f"{n} samples, seed {seed}, ±{z:g} SE = ±{z * se:.2g} ({type(p).__name__}: {names})",
    )
