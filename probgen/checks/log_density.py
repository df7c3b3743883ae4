"""Log-densities for the references, independent of the closed forms under test: scipy.stats
where it has the family (through its standardized methods where they agree with the public
ones), torch's ``log_prob`` in float64 otherwise; the support interval of univariate laws; and
the cancellation-free terms p·(e^ℓ − 1 − ℓ) that the sums and integrals add up.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
import torch.distributions as td
from torch.distributions import Distribution

from probgen.checks.densities import scipy_equivalent

__all__ = ["fast_scipy", "k3_terms", "log_density", "log_prob", "support_interval"]


def support_interval(d: Distribution) -> tuple[float, float]:
    """The smallest interval holding the support of a univariate ``d`` (``±inf`` if unbounded;
    ``(-inf, inf)`` for multivariate ``d``, whose supports are compared by the closed forms)."""
    if d.event_shape != () or isinstance(d, td.VonMises):
        return -math.inf, math.inf
    sp = scipy_equivalent(d)
    if sp is not None:
        lo, hi = sp.support()
        return float(lo), float(hi)
    c = d.support
    while hasattr(c, "base_constraint"):
        c = c.base_constraint
    lo = getattr(c, "lower_bound", -math.inf)
    hi = getattr(c, "upper_bound", math.inf)
    return float(lo), float(hi)


def log_prob(d: Distribution, x: torch.Tensor) -> torch.Tensor:
    """log d(x) in float64, −inf outside the support (no validation error)."""
    saved = d._validate_args
    d._validate_args = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lp = d.log_prob(x)
    finally:
        d._validate_args = saved
    inside = d.support.check(x)
    return torch.where(inside, lp, torch.full_like(lp, -math.inf))


def log_density(d: Distribution):
    """``(f, source)``: f maps float64 x to log d(x); scipy.stats where it has d. Where scipy
    underflows inside the support (some families compute ``log(pdf)``: −inf far in the
    tails), torch's float64 ``log_prob`` is used for that point."""

    def torch_f(x):
        t = torch.as_tensor(np.asarray(x, dtype=float), dtype=torch.float64)
        return log_prob(d, t).numpy()

    sp = scipy_equivalent(d)
    if sp is None:
        return torch_f, "torch log_prob, float64"
    lo, hi = (float(v) for v in sp.support())
    if not d.support.is_discrete:
        fast = fast_scipy(sp)
        if fast is not None:
            scipy_logpdf = fast[0]

            def f(x):
                v = scipy_logpdf(x)
                if v == -math.inf and lo < float(x) < hi:
                    return float(torch_f(float(x)))
                return v

            return f, "scipy.stats"
    log = sp.logpmf if d.support.is_discrete else sp.logpdf

    def g(x):
        x = np.asarray(x, dtype=float)
        v = np.asarray(log(x), dtype=float)
        bad = np.isneginf(v) & (x > lo) & (x < hi)
        return np.where(bad, torch_f(x), v) if bad.any() else v

    return g, "scipy.stats"


def fast_scipy(sp):
    """``(logpdf, ppf, isf)`` of a frozen continuous scipy.stats distribution through its
    standardized methods, skipping scipy's per-call argument handling (the quadrature calls
    them thousands of times); ``None`` if they disagree with the public methods at probes."""
    try:
        shapes, loc, scale = sp.dist._parse_args(*sp.args, **sp.kwds)
        lo, hi = (float(v) for v in sp.support())
        dist, log_scale = sp.dist, math.log(scale)

        def logpdf(x):
            x = float(x)
            if not lo <= x <= hi:
                return -math.inf
            v = float(dist._logpdf((x - loc) / scale, *shapes)) - log_scale
            return -math.inf if math.isnan(v) else v

        def ppf(u):
            return float(dist._ppf(u, *shapes)) * scale + loc

        def isf(u):
            return float(dist._isf(u, *shapes)) * scale + loc

        for u in (0.1, 0.5, 0.8):
            x = float(sp.ppf(u))
            agree = (
                math.isclose(ppf(u), x, rel_tol=1e-12, abs_tol=1e-300)
                and math.isclose(isf(u), float(sp.isf(u)), rel_tol=1e-12, abs_tol=1e-300)
                and math.isclose(logpdf(x), float(sp.logpdf(x)), rel_tol=1e-12, abs_tol=1e-12)
            )
            if not agree:
                return None
    except (AttributeError, TypeError, ValueError):
        return None
    return logpdf, ppf, isf


def k3_terms(lp: np.ndarray, lq: np.ndarray) -> np.ndarray:
    """p·(e^ℓ − 1 − ℓ) with ℓ = log q − log p, computed without cancellation or overflow; +inf
    where p > 0 = q, q where p = 0."""
    with np.errstate(all="ignore"):
        ell = lq - lp
        p = np.exp(lp)
        small = p * (np.expm1(ell) - ell)
        large = np.exp(lq) - p - p * ell
        out = np.where(np.abs(ell) <= 1, small, large)
        out = np.where(np.isneginf(lp), np.exp(lq), out)
        return np.where(np.isneginf(lq) & ~np.isneginf(lp), math.inf, out)
