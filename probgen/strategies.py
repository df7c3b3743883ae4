"""Hypothesis strategies for distributions and KL pairs, for property tests.

Parameters are drawn from each family's constraints, as float32-representable values (so a
float32 draw and its float64 copy are the same law), over wide ranges that include the hard
regimes of the KL closed forms: extreme scales (1e-3 … 1e3), large concentrations (up to 1e5),
probabilities near 0 and 1, and near-equal pairs (q = p with parameters moved by a relative
2⁻²⁰ … 2⁻⁴). Batch shapes are ``()``, ``(2,)`` or ``(2, 1)`` unless given.

Example::

    from hypothesis import given
    from probgen.strategies import kl_pairs
    from probgen.checks import assert_kl_close

    @given(kl_pairs(Normal, Normal))
    def test_normal_kl(pair):
        assert_kl_close(*pair)

Importing this module imports Hypothesis (a test dependency); :mod:`probgen.checks` does not.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributions as td
from hypothesis import strategies as st
from torch.distributions import Distribution
from torch.distributions.exp_family import ExponentialFamily

__all__ = [
    "BATCH_SHAPES",
    "FAMILY_PARAMS",
    "batch_shapes",
    "distributions",
    "kl_pairs",
    "supported_pair",
]

BATCH_SHAPES: tuple[tuple[int, ...], ...] = ((), (2,), (2, 1))


def batch_shapes() -> st.SearchStrategy[tuple[int, ...]]:
    return st.sampled_from(BATCH_SHAPES)


def _f32(lo: float, hi: float, hard: tuple[float, ...] = ()) -> st.SearchStrategy[float]:
    """float32 values in [lo, hi], log-uniform when lo > 0, with the hard values mixed in."""
    if lo > 0:
        base = st.floats(np.log(lo), np.log(hi)).map(lambda e: float(np.float32(np.exp(e))))
    else:
        base = st.floats(lo, hi, width=32)
    base = base.filter(lambda x: lo <= x <= hi)
    return st.one_of(base, st.sampled_from(hard)) if hard else base


LOC = _f32(-1e3, 1e3, (0.0, 1e3))
SCALE = _f32(1e-3, 1e3, (1e-3, 1.0, 1e3))
CONC = _f32(1e-2, 1e5, (1e-2, 1e5))
RATE = _f32(1e-3, 1e3, (1e-3, 1e3))
PROB = _f32(1e-6, 1 - 1e-6, (1e-6, 0.5, 0.999999)).filter(lambda x: 0 < x < 1)

# family -> (constructor argument order, strategy of each argument's scalar values)
FAMILY_PARAMS: dict[type, tuple[tuple[str, st.SearchStrategy], ...]] = {
    td.Normal: (("loc", LOC), ("scale", SCALE)),
    td.Laplace: (("loc", LOC), ("scale", SCALE)),
    td.Cauchy: (("loc", LOC), ("scale", SCALE)),
    td.Gumbel: (("loc", LOC), ("scale", _f32(1e-2, 1e2, (1e-2,)))),
    td.LogNormal: (("loc", _f32(-5, 5)), ("scale", _f32(1e-3, 3, (1e-3,)))),
    td.HalfNormal: (("scale", SCALE),),
    td.Exponential: (("rate", RATE),),
    td.Gamma: (("concentration", CONC), ("rate", RATE)),
    td.Beta: (("concentration1", CONC), ("concentration0", CONC)),
    td.Kumaraswamy: (("concentration1", _f32(0.2, 50)), ("concentration0", _f32(0.2, 50))),
    td.Weibull: (("scale", _f32(1e-2, 1e2)), ("concentration", _f32(0.2, 20))),
    td.Pareto: (("scale", _f32(1e-2, 1e2)), ("alpha", _f32(4.5, 50))),
    td.VonMises: (("loc", _f32(-3, 3)), ("concentration", _f32(1e-2, 1e4, (1e4,)))),
    td.ContinuousBernoulli: (("probs", _f32(1e-3, 1 - 1e-3, (0.4999, 0.5001))),),
    td.Bernoulli: (("probs", PROB),),
    td.Geometric: (("probs", _f32(1e-2, 1 - 1e-6, (0.999999,))),),
    td.Poisson: (("rate", _f32(1e-3, 1e4, (1e-3, 1e4))),),
}


def _uniform(t, shape, draw) -> Distribution:
    low = t(draw(_arrays(_f32(-1e3, 1e3), shape)))
    width = t(draw(_arrays(_f32(1e-3, 1e3, (1e-3,)), shape)))
    return td.Uniform(low, low + width, validate_args=False)


def _arrays(values: st.SearchStrategy[float], shape) -> st.SearchStrategy[np.ndarray]:
    n = int(np.prod(shape)) if shape else 1
    return st.lists(values, min_size=n, max_size=n).map(
        lambda v: np.asarray(v, dtype=np.float32).reshape(shape)
    )


def _simplex(draw, shape, k: int) -> np.ndarray:
    w = draw(_arrays(_f32(1e-6, 1.0, (1e-6,)), (*shape, k)))
    return (w / w.sum(-1, keepdims=True)).astype(np.float32)


@st.composite
def distributions(
    draw,
    family: type,
    dtype: torch.dtype = torch.float64,
    batch_shape: tuple[int, ...] | None = None,
    event_size: int | None = None,
) -> Distribution:
    """A valid ``family`` distribution in ``dtype`` with batch shape ``batch_shape`` (drawn
    from :data:`BATCH_SHAPES` if ``None``); ``event_size`` for vector-valued families (2 or 3
    if ``None``). Abstract families draw a concrete member: ``ExponentialFamily`` → Normal,
    Gamma or Poisson; ``TransformedDistribution`` → LogNormal; ``Independent`` →
    ``Independent(Normal, 1)``."""
    shape = draw(batch_shapes()) if batch_shape is None else tuple(batch_shape)
    k = draw(st.sampled_from((2, 3))) if event_size is None else event_size

    def t(a):
        return torch.as_tensor(np.asarray(a, dtype=np.float32), dtype=dtype)

    if family is ExponentialFamily:
        family = draw(st.sampled_from((td.Normal, td.Gamma, td.Poisson)))
    if family is td.TransformedDistribution:
        family = td.LogNormal
    if family in FAMILY_PARAMS:
        args = [t(draw(_arrays(s, shape))) for _, s in FAMILY_PARAMS[family]]
        return family(*args, validate_args=False)
    if family is td.Uniform:
        return _uniform(t, shape, draw)
    if family is td.Binomial:
        n = t(draw(_arrays(st.integers(0, 1000).map(float), shape)))
        return td.Binomial(n, t(draw(_arrays(PROB, shape))), validate_args=False)
    if family in (td.Categorical, td.OneHotCategorical):
        return family(probs=t(_simplex(draw, shape, k)), validate_args=False)
    if family is td.Dirichlet:
        return td.Dirichlet(t(draw(_arrays(CONC, (*shape, k)))), validate_args=False)
    if family is td.MultivariateNormal:
        loc = t(draw(_arrays(LOC, (*shape, k))))
        diag = t(draw(_arrays(_f32(1e-2, 1e2), (*shape, k))))
        off = t(draw(_arrays(_f32(-1, 1), (*shape, k, k)))).tril(-1)
        return td.MultivariateNormal(loc, scale_tril=off + torch.diag_embed(diag))
    if family is td.LowRankMultivariateNormal:
        loc = t(draw(_arrays(LOC, (*shape, k))))
        w = t(draw(_arrays(_f32(-3, 3), (*shape, k, 1))))
        d = t(draw(_arrays(_f32(1e-3, 1e2, (1e-3,)), (*shape, k))))
        return td.LowRankMultivariateNormal(loc, w, d)
    if family is td.Independent:
        base = draw(distributions(td.Normal, dtype, (*shape, k)))
        return td.Independent(base, 1)
    raise ValueError(f"family: no strategy for {family!r}")


def supported_pair(type_p: type, type_q: type) -> bool:
    """Whether :func:`kl_pairs` can draw the pair of types."""
    known = {
        *FAMILY_PARAMS,
        ExponentialFamily,
        td.TransformedDistribution,
        td.Uniform,
        td.Binomial,
        td.Categorical,
        td.OneHotCategorical,
        td.Dirichlet,
        td.MultivariateNormal,
        td.LowRankMultivariateNormal,
        td.Independent,
    }
    return type_p in known and type_q in known


def _near(d: Distribution, factor: float) -> Distribution:
    from probgen.checks.cases import _near as near_by

    # Reuse the audit's perturbation, rescaled: cases._near moves by 2⁻¹⁰.
    label, moved = near_by(("", d))
    del label
    if factor == 2.0**-10:
        return moved
    return _scale_move(d, moved, factor / 2.0**-10)


def _scale_move(d: Distribution, moved: Distribution, ratio: float) -> Distribution:
    from probgen.checks.densities import _rebuild, given_params

    a, b = given_params(d), given_params(moved)
    params = {}
    for k, v in a.items():
        params[k] = v + (b[k] - v) * ratio if v.is_floating_point() and k != "total_count" else v
    if "probs" in params:
        probs = params["probs"].clamp(1e-7, 1 - 1e-6)
        if isinstance(d, (td.Categorical, td.OneHotCategorical)):
            probs = probs / probs.sum(-1, keepdim=True)
        params["probs"] = probs
    return _rebuild(d, params)


@st.composite
def kl_pairs(
    draw,
    type_p: type,
    type_q: type,
    dtype: torch.dtype = torch.float64,
    batch_shape: tuple[int, ...] | None = None,
) -> tuple[Distribution, Distribution]:
    """``(p, q)`` with ``p`` of type ``type_p`` and ``q`` of ``type_q``, on one event space and
    with broadcastable batch shapes. For a pair of one type, q is half the time p with its
    parameters moved by a relative 2⁻²⁰ … 2⁻⁴ (the near-equal regime)."""
    shape = draw(batch_shapes()) if batch_shape is None else tuple(batch_shape)
    k = draw(st.sampled_from((2, 3)))
    if type_p is ExponentialFamily and type_q is ExponentialFamily:
        type_p = type_q = draw(st.sampled_from((td.Normal, td.Gamma, td.Poisson)))
    if {type_p, type_q} & {td.Dirichlet} and {type_p, type_q} & {td.Beta}:
        k = 2  # Dirichlet ↔ Beta: a two-component Dirichlet
    p = draw(distributions(type_p, dtype, shape, k))
    if type_p is type_q and draw(st.booleans()):
        exponent = draw(st.integers(4, 20))
        q = _near(p, 2.0**-exponent)
    else:
        q = draw(distributions(type_q, dtype, shape, k))
    return p, q
