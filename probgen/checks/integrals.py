"""The exact-sum and quadrature references of :mod:`probgen.checks.references`.

* **exact sum** for discrete p: over the finite support, or over {0, …, N} with a ratio-test
  bound on the rest.
* **quad**: ``scipy.integrate.quad`` for univariate continuous p, over p's quantile where scipy
  has it, else over x with break points.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import torch
import torch.distributions as td
from torch.distributions import Distribution

from probgen.checks.densities import scipy_equivalent
from probgen.checks.log_density import fast_scipy, k3_terms, log_density, support_interval
from probgen.checks.report import Reference

__all__ = ["exact_sum", "quad"]

_TAIL = 1e-20  # quantile of the truncation of infinite discrete supports
_QUAD_EPSREL = 1e-10


def exact_sum(p: Distribution, q: Distribution) -> Reference:
    log_p, src_p = log_density(p)
    log_q, src_q = log_density(q)
    source = src_p if src_p == src_q else f"{src_p} / {src_q}"
    if p.has_enumerate_support:
        xs = p.enumerate_support(expand=False).reshape(-1).double().numpy()
        truncated_at = None
    else:
        sp_p, sp_q = scipy_equivalent(p), scipy_equivalent(q)
        if sp_p is None:
            return Reference.missing("exact sum", f"cannot truncate {type(p).__name__}")
        n = _far_tail(sp_p)
        if sp_q is not None and math.isinf(sp_q.support()[1]):
            n = max(n, _far_tail(sp_q))
        truncated_at = int(min(n, 10**7)) + 1
        xs = np.arange(truncated_at + 1, dtype=float)
    terms = k3_terms(log_p(xs), log_q(xs))
    value = math.fsum(terms)
    if math.isinf(value):
        return Reference(math.inf, 0.0, "exact sum", "q(x) = 0 < p(x) for some x")
    # q's mass outside the summed points.
    sp_q = scipy_equivalent(q)
    hi_q = support_interval(q)[1]
    if hi_q > xs[-1]:
        if sp_q is None:
            return Reference.missing("exact sum", "q's mass outside p's support is unknown")
        value += float(sp_q.sf(xs[-1]))
    bound = 1e-15 * (1 + abs(value))
    detail = f"{len(xs)} terms ({source})"
    if truncated_at is not None:
        tail = terms[-16:]
        ratios = tail[1:] / np.where(tail[:-1] > 0, tail[:-1], np.inf)
        r = float(np.max(ratios)) if tail.size else 0.0
        if not r < 1:
            return Reference.missing("exact sum", f"tail terms do not decay (ratio {r:.3g})")
        bound += float(terms[-1]) * r / (1 - r)
        detail = f"truncated at N={truncated_at}, tail ≤ {bound:.2g} ({source})"
    return Reference(value, bound, "exact sum", detail)


def _far_tail(sp) -> float:
    """A point beyond which the discrete ``sp`` has mass below about 1e-20."""
    n = float(sp.isf(_TAIL))
    if not math.isfinite(n):
        n = float(sp.mean() + 40 * sp.std() + 40)
    return n


def quad(p: Distribution, q: Distribution) -> Reference:
    from scipy import integrate

    log_p, src_p = log_density(p)
    log_q, src_q = log_density(q)
    source = src_p if src_p == src_q else f"{src_p} / {src_q}"
    sp = scipy_equivalent(p)
    lo, hi = support_interval(p)

    def ell_at(x):
        return float(log_q(x) - log_p(x))

    pieces = []  # (integrand over a variable, a, b, break points)
    lost: list[float] = []  # quantiles that rounded onto a point where log p is not finite
    fast = fast_scipy(sp) if sp is not None and not isinstance(p, td.VonMises) else None
    if fast is not None:
        _, ppf, isf = fast
        probes = [ppf(u) for u in (1e-12, 1e-3, 0.5)] + [isf(u) for u in (1e-3, 1e-12)]
        k3 = all(abs(ell_at(x)) <= 5 for x in probes)

        def lower(u):
            return _integrand_u(ppf(u), log_p, log_q, k3, lost)

        def upper(u):
            return _integrand_u(isf(u), log_p, log_q, k3, lost)

        # q's log-density kinks (Laplace's mode, support edges) as break points in u.
        sp_cdf = scipy_equivalent(p)
        kinks = [float(sp_cdf.cdf(x)) for x in _kinks(q)] + [float(sp_cdf.sf(x)) for x in _kinks(q)]
        low_pts = sorted({u for u in kinks[: len(kinks) // 2] if 0 < u < 0.5})
        up_pts = sorted({u for u in kinks[len(kinks) // 2 :] if 0 < u < 0.5})
        pieces = [(lower, 0.0, 0.5, low_pts), (upper, 0.0, 0.5, up_pts)]
        where = "over p's quantile"
    else:
        k3 = True
        center, width = _center_width(p)
        a, b = (center - math.pi, center + math.pi) if isinstance(p, td.VonMises) else (lo, hi)
        cuts = [center + k * width for k in (-30, -6, -1, 0, 1, 6, 30)]
        cuts = [a, *sorted(c for c in cuts if a < c < b), b]

        def dens(x):
            return float(k3_terms(np.array([log_p(x)]), np.array([log_q(x)]))[0])

        cuts = sorted(set(cuts) | {x for x in _kinks(q) if a < x < b})
        pieces = [(dens, a, b, []) for a, b in itertools.pairwise(cuts)]
        where = "over x"

    total, abserr, roundoff = 0.0, 0.0, False
    for f, a, b, points in pieces:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = integrate.quad(
                f,
                a,
                b,
                epsabs=1e-300,
                epsrel=_QUAD_EPSREL,
                limit=200,
                full_output=1,
                points=points or None,
            )
        value, err = out[0], out[1]
        # ier 2 and 4 (roundoff detected: "the result is the best which can be obtained")
        # keep their error estimate; the others (subdivision limit, bad integrand behaviour,
        # divergence) mean the integral did not converge.
        failed = len(out) > 3 and "roundoff" not in str(out[3]).lower()
        if failed or not (math.isfinite(value) and math.isfinite(err)):
            why = out[3] if len(out) > 3 else "non-finite result"
            return Reference.missing("quad", f"quadrature did not converge: {str(why)[:80]}")
        roundoff = roundoff or len(out) > 3
        total += value
        abserr += err
    if lost:
        return Reference.missing(
            "quad", f"p's quantile rounds onto x={lost[0]:.3g}, where log p(x) is not finite"
        )
    form = "E_p[e^ℓ−1−ℓ]" if k3 else "E_p[−ℓ]"
    if k3:
        total += _mass_outside(q, lo, hi)
    rounding = 1e-14 * (1 + abs(total))
    note = "; roundoff detected" if roundoff else ""
    return Reference(
        total,
        abserr + rounding,
        f"quad ({source})",
        f"{form} {where}, quadrature error estimate {abserr:.2g}{note}",
    )


def _kinks(d: Distribution) -> list[float]:
    """Points where log d is not smooth: a Laplace's mode, the finite ends of the support."""
    out = [float(d.loc)] if isinstance(d, td.Laplace) else []
    if d.event_shape == () and not isinstance(d, td.VonMises):
        out += [x for x in support_interval(d) if math.isfinite(x)]
    return out


def _integrand_u(x: float, log_p, log_q, k3: bool, lost: list[float]) -> float:
    lp, lq = float(log_p(x)), float(log_q(x))
    if not math.isfinite(lp):
        lost.append(x)
        return 0.0
    ell = lq - lp
    if not k3:
        return -ell
    return math.expm1(ell) - ell if abs(ell) <= 1 else math.exp(min(ell, 700.0)) - 1 - ell


def _mass_outside(q: Distribution, lo: float, hi: float) -> float:
    """Q(x < lo) + Q(x > hi)."""
    sp = scipy_equivalent(q)
    lo_q, hi_q = support_interval(q)
    if lo <= lo_q and hi >= hi_q:
        return 0.0
    if sp is not None:
        return float(sp.cdf(lo)) + float(sp.sf(hi))
    x = torch.tensor([lo, hi], dtype=torch.float64).clamp(lo_q, hi_q)
    c = q.cdf(x)
    return float(c[0]) + float(1 - c[1])


def _center_width(d: Distribution) -> tuple[float, float]:
    """A point in the bulk of univariate ``d`` and a length of its spread."""
    if isinstance(d, td.VonMises):
        return float(d.loc), 1 / math.sqrt(float(d.concentration))
    try:
        u = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
        x = d.icdf(u)
        return float(x[1]), max(float(x[2] - x[0]), 1e-300)
    except NotImplementedError:
        pass
    mean, std = float(d.mean), float(d.stddev)
    if math.isfinite(mean) and math.isfinite(std):
        return mean, max(std, 1e-300)
    return 0.0, 1.0
