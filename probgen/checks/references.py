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

import itertools
import math
import warnings

import numpy as np
import torch
import torch.distributions as td
from torch.distributions import Distribution, Independent

from probgen.checks.densities import (
    _is_delta,
    _is_masked,
    as_float64,
    batch_elements,
    given_params,
    same_law_view,
    scipy_equivalent,
)
from probgen.checks.report import Reference

__all__ = ["reference_kl", "support_interval"]

_TAIL = 1e-20  # quantile of the truncation of infinite discrete supports
_QUAD_EPSREL = 1e-10


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
        lq = float(_log_prob(q, v).sum())
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
            return _exact_sum(p, q)
        if not q.support.is_discrete:
            return _quad(p, q)
    return _monte_carlo(p, q, mc_samples, seed, z)


# ---------------------------------------------------------------------------- densities


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


def _log_prob(d: Distribution, x: torch.Tensor) -> torch.Tensor:
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


def _log_density(d: Distribution):
    """``(f, source)``: f maps float64 x to log d(x); scipy.stats where it has d. Where scipy
    underflows inside the support (some families compute ``log(pdf)``: −inf far in the
    tails), torch's float64 ``log_prob`` is used for that point."""

    def torch_f(x):
        t = torch.as_tensor(np.asarray(x, dtype=float), dtype=torch.float64)
        return _log_prob(d, t).numpy()

    sp = scipy_equivalent(d)
    if sp is None:
        return torch_f, "torch log_prob, float64"
    lo, hi = (float(v) for v in sp.support())
    if not d.support.is_discrete:
        fast = _fast_scipy(sp)
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


def _fast_scipy(sp):
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


def _k3_terms(lp: np.ndarray, lq: np.ndarray) -> np.ndarray:
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


# ---------------------------------------------------------------------------- discrete


def _exact_sum(p: Distribution, q: Distribution) -> Reference:
    log_p, src_p = _log_density(p)
    log_q, src_q = _log_density(q)
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
    terms = _k3_terms(log_p(xs), log_q(xs))
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


# ---------------------------------------------------------------------------- quadrature


def _quad(p: Distribution, q: Distribution) -> Reference:
    from scipy import integrate

    log_p, src_p = _log_density(p)
    log_q, src_q = _log_density(q)
    source = src_p if src_p == src_q else f"{src_p} / {src_q}"
    sp = scipy_equivalent(p)
    lo, hi = support_interval(p)

    def ell_at(x):
        return float(log_q(x) - log_p(x))

    pieces = []  # (integrand over a variable, a, b, break points)
    lost: list[float] = []  # quantiles that rounded onto a point where log p is not finite
    fast = _fast_scipy(sp) if sp is not None and not isinstance(p, td.VonMises) else None
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
            return float(_k3_terms(np.array([log_p(x)]), np.array([log_q(x)]))[0])

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


# ---------------------------------------------------------------------------- structured


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
    ell = (_log_prob(q, x) - _log_prob(p, x)).reshape(n, -1).sum(-1)
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
