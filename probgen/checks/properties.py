r"""Properties every KL implementation must have, each checked on one pair (p, q).

* ``non-negative``: KL(p ‖ q) ≥ 0 and not NaN (Gibbs' inequality).
* ``zero on equal``: |KL(p ‖ p)| ≤ atol, the dtype's resolution.
* ``asymmetry``: where the references of KL(p ‖ q) and KL(q ‖ p) differ by more than their
  tolerances, the computed values differ in the same direction; where they agree (the symmetric
  cases: equal-scale Normals and Laplaces, Cauchy pairs, …), the computed values agree too.
* ``affine invariance``: KL(T p ‖ T q) = KL(p ‖ q) for T(x) = a + b·x, location–scale families.
* ``independent additivity``: KL(Independent(p) ‖ Independent(q)) = Σ KL(p_i ‖ q_i).
* ``analytic vs mc``: the closed form lies within ``z`` standard errors of a seeded Monte Carlo
  estimate (:func:`probgen.mc_kl`, naive estimator, float64).
* ``log-density vs scipy``: torch's ``log_prob`` (float64) agrees with ``scipy.stats`` at samples.

Each function returns a :class:`~probgen.checks.report.PropertyResult`; ``held=None`` means
the property does not apply to the pair (the detail says why).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.distributions as td
from torch.distributions import Distribution

from probgen.checks.affine import affine_image, affine_map_for
from probgen.checks.densities import as_float64, same_law_view, scipy_equivalent
from probgen.checks.report import PropertyResult, Reference

__all__ = [
    "PROPERTIES",
    "analytic_vs_mc",
    "asymmetry",
    "independent_additivity",
    "invariance_affine",
    "known_symmetric",
    "log_density_vs_scipy",
    "non_negative",
    "zero_on_equal",
]

PROPERTIES: tuple[str, ...] = (
    "non-negative",
    "zero on equal",
    "asymmetry",
    "affine invariance",
    "independent additivity",
    "analytic vs mc",
    "log-density vs scipy",
)

KLFn = Callable[[Distribution, Distribution], torch.Tensor]


def _max_abs(x: torch.Tensor) -> float:
    x = x.detach().double()
    return float(torch.nan_to_num(x, nan=math.inf).abs().max()) if x.numel() else 0.0


def non_negative(values: list[torch.Tensor]) -> PropertyResult:
    """All of ``values`` (KL(p‖q), KL(q‖p), KL(p‖p) as computed) are ≥ 0 and not NaN."""
    worst = 0.0
    for v in values:
        v = v.detach().double()
        if bool(torch.isnan(v).any()):
            return PropertyResult("non-negative", False, math.nan, 0.0, "NaN returned")
        worst = min(worst, float(v.min()))
    return PropertyResult(
        "non-negative", worst >= 0, -worst, 0.0, "" if worst >= 0 else f"smallest value {worst:.3g}"
    )


def zero_on_equal(fn: KLFn, p: Distribution, atol: float) -> PropertyResult:
    """|KL(p ‖ p)| ≤ atol."""
    v = fn(p, p)
    err = _max_abs(v)
    return PropertyResult("zero on equal", err <= atol, err, atol)


def known_symmetric(p: Distribution, q: Distribution) -> str | None:
    """Why KL(p ‖ q) = KL(q ‖ p) for this pair, or ``None`` if it is not a known symmetric
    case: Normals (or Laplaces) with equal scales, Cauchy pairs, Gaussians with equal
    covariance."""
    if type(p) is type(q) and isinstance(p, (td.Normal, td.Laplace)):
        if bool((p.scale == q.scale).all()):
            return f"equal-scale {type(p).__name__}s"
    if type(p) is type(q) is td.Cauchy:
        return "Cauchy pair"
    if type(p) is type(q) is td.MultivariateNormal:
        if p.scale_tril.shape == q.scale_tril.shape and bool((p.scale_tril == q.scale_tril).all()):
            return "Gaussians with equal covariance"
    return None


def asymmetry(
    v_pq: torch.Tensor,
    v_qp: torch.Tensor | None,
    refs_pq: list[Reference],
    refs_qp: list[Reference] | None,
    tol: Callable[[float], float],
    symmetric: str | None,
) -> PropertyResult:
    """KL(p ‖ q) vs KL(q ‖ p): ordered as their references are, equal in symmetric cases."""
    if v_qp is None or refs_qp is None:
        return PropertyResult("asymmetry", None, detail="KL(q ‖ p) has no closed form")
    a, b = v_pq.detach().double().reshape(-1), v_qp.detach().double().reshape(-1)
    worst_err, worst_tol, held = 0.0, 0.0, True
    for i, (rp, rq) in enumerate(zip(refs_pq, refs_qp, strict=True)):
        if not (rp.ok and rq.ok) or math.isinf(rp.value) or math.isinf(rq.value):
            continue
        t = tol(rp.value) + tol(rq.value)
        ai, bi = float(a[i]), float(b[i])
        if symmetric or abs(rp.value - rq.value) <= t:
            err, ok = abs(ai - bi), abs(ai - bi) <= t
        else:
            gap = rp.value - rq.value
            err, ok = abs((ai - bi) - gap), (ai - bi) * gap > 0
        if err - t > worst_err - worst_tol or not ok:
            worst_err, worst_tol = err, t
        held = held and ok
    detail = f"known symmetric: {symmetric}" if symmetric else ""
    return PropertyResult("asymmetry", held, worst_err, worst_tol, detail)


def invariance_affine(
    fn: KLFn, p: Distribution, q: Distribution, value: torch.Tensor, tol: Callable[[float], float]
) -> PropertyResult:
    """KL(T p ‖ T q) = KL(p ‖ q) under the shared map of :func:`affine_map_for`."""
    spec = affine_map_for(p, q)
    if spec is None:
        return PropertyResult("affine invariance", None, detail="not a location–scale pair")
    a, b = spec
    a = a.to(_dtype(p))
    moved = fn(affine_image(p, a, b), affine_image(q, a, b))
    return _compare("affine invariance", moved, value, tol, f"x ↦ a + {b:g}·x, a = −{b:g}·loc_p")


def independent_additivity(
    kl: KLFn, p: Distribution, q: Distribution, value: torch.Tensor, tol: Callable[[float], float]
) -> PropertyResult:
    """KL(Independent(p) ‖ Independent(q)) = Σ over the reinterpreted dims of KL(p_i ‖ q_i),
    through the registry's dispatch ``kl``."""
    name = "independent additivity"
    if isinstance(p, td.Independent) and isinstance(q, td.Independent):
        n = p.reinterpreted_batch_ndims
        if n != q.reinterpreted_batch_ndims or p.base_dist.event_shape != q.base_dist.event_shape:
            return PropertyResult(name, None, detail="different reinterpreted dims")
        parts = kl(p.base_dist, q.base_dist)
        summed = parts.sum(tuple(range(-n, 0))) if n else parts
        return _compare(name, value, summed, tol, f"sum over {n} reinterpreted dim(s)")
    if p.event_shape != () or q.event_shape != () or not _plain(p) or not _plain(q):
        return PropertyResult(name, None, detail="not a univariate pair")
    shape = torch.broadcast_shapes(p.batch_shape, q.batch_shape) or torch.Size([1])
    ip = td.Independent(p.expand(shape), 1)
    iq = td.Independent(q.expand(shape), 1)
    total = kl(ip, iq)
    return _compare(name, total, value.expand(shape).sum(-1), tol, "Independent(p, 1) over batch")


def analytic_vs_mc(
    p: Distribution,
    q: Distribution,
    value: torch.Tensor,
    tol: Callable[[float], float],
    *,
    num_samples: int,
    seed: int,
    z: float,
) -> PropertyResult:
    """|closed form − MC| ≤ z·SE + tol, MC by :func:`probgen.mc_kl` in float64."""
    from probgen.kl.monte_carlo import mc_kl

    name = "analytic vs mc"
    if not bool(torch.isfinite(value).all()):
        return PropertyResult(name, None, detail="KL is infinite")
    pv, qv = same_law_view(as_float64(p)), same_law_view(as_float64(q))
    if pv.event_shape != qv.event_shape:
        return PropertyResult(name, None, detail="different event spaces")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = mc_kl(pv, qv, num_samples, seed=seed)
    except (NotImplementedError, ValueError, RuntimeError) as e:
        return PropertyResult(name, None, detail=f"cannot sample: {e}"[:100])
    mc = res.value.detach().expand(value.shape).reshape(-1)
    se = res.stderr.expand(value.shape).reshape(-1)
    v = value.detach().double().reshape(-1)
    degenerate = se <= 64 * torch.finfo(torch.float64).eps * (1 + mc.abs())
    if bool((degenerate & ((v - mc).abs() > torch.tensor([tol(float(x)) for x in v]))).any()):
        # Every sample gave the same log-ratio: outcomes rarer than 1/n were not drawn, and
        # the standard error (0) says nothing about them.
        return PropertyResult(name, None, detail="rare outcomes not sampled (standard error 0)")
    v = value.detach().double().reshape(-1)
    errs = (v - mc).abs()
    tols = torch.tensor([z * float(s) + tol(float(x)) for s, x in zip(se, v, strict=True)])
    i = int(torch.argmax(errs - tols))
    return PropertyResult(
        name,
        bool((errs <= tols).all()),
        float(errs[i]),
        float(tols[i]),
        f"{num_samples} samples, seed {seed}, {z:g} SE",
    )


def log_density_vs_scipy(d: Distribution, label: str, *, seed: int) -> PropertyResult:
    """torch's float64 ``log_prob`` at 8 samples of ``d`` (batch ``()``) vs scipy.stats, to
    ``1e-6·(1 + |log d(x)|)``."""
    name = f"log-density vs scipy ({label})"
    sp = scipy_equivalent(d)
    if sp is None:
        return PropertyResult(name, None, detail="no scipy.stats equivalent")
    d64 = as_float64(d)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        x = d64.sample((8,))
    ours = d64.log_prob(x).numpy()
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        theirs = (sp.logpmf if d.support.is_discrete else sp.logpdf)(x.numpy())
    err = np.abs(ours - theirs)
    # Formula errors are O(1); float64 rounding of large terms (lgamma of 1e6, …) is ≤ 1e-8.
    tols = 1e-6 * (1 + np.abs(theirs))
    i = int(np.argmax(err - tols))
    return PropertyResult(name, bool((err <= tols).all()), float(err[i]), float(tols[i]))


def _compare(name, a, b, tol, detail) -> PropertyResult:
    a, b = a.detach().double().reshape(-1), b.detach().double().expand(a.shape).reshape(-1)
    both_inf = torch.isinf(a) & torch.isinf(b) & (a.sign() == b.sign())
    errs = torch.where(both_inf, torch.zeros_like(a), (a - b).abs())
    errs = torch.nan_to_num(errs, nan=math.inf)
    tols = torch.tensor([tol(float(x)) for x in b], dtype=torch.float64)
    i = int(torch.argmax(errs - tols))
    return PropertyResult(name, bool((errs <= tols).all()), float(errs[i]), float(tols[i]), detail)


def _plain(d: Distribution) -> bool:
    return type(d).__name__ not in ("MaskedDistribution", "Delta")


def _dtype(d: Distribution) -> torch.dtype:
    for v in vars(d).values():
        if torch.is_tensor(v) and v.is_floating_point():
            return v.dtype
        if isinstance(v, Distribution):
            return _dtype(v)
    return torch.get_default_dtype()
