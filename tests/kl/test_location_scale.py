"""KL closed forms of probgen.kl.location_scale: accuracy against mpmath, zeros, sign, Monte
Carlo, shapes, gradients, +inf support mismatches and dispatch."""

from __future__ import annotations

import itertools
import math

import mpmath
import pytest
import torch
import torch.distributions as td
from kl_targets import RELS, SCALES, near_equal_loc_scale
from torch.distributions import kl_divergence

import probgen
from probgen.kl import location_scale as ls
from probgen.kl.registry import lookup, torch_kl_only

DTYPES = (torch.float32, torch.float64)
INF = mpmath.inf


# Textbook forms (Gil 2011; Chyzak & Nielsen 2019 for Cauchy), evaluated in 60-digit arithmetic.
def ref_exponential(lp, lq):
    return mpmath.log(lp / lq) + lq / lp - 1


def ref_laplace(mp, bp, mq, bq):
    delta = abs(mp - mq)
    return mpmath.log(bq / bp) + delta / bq + bp / bq * mpmath.exp(-delta / bp) - 1


def ref_gumbel(mp, bp, mq, bq):
    r, delta = bp / bq, (mp - mq) / bq
    return (
        -mpmath.log(r)
        + mpmath.euler * (r - 1)
        + delta
        + mpmath.exp(mpmath.loggamma(1 + r) - delta)
        - 1
    )


def ref_cauchy(mp, sp, mq, sq):
    return mpmath.log(((sp + sq) ** 2 + (mp - mq) ** 2) / (4 * sp * sq))


def ref_uniform(lp, hp, lq, hq):
    return mpmath.log((hq - lq) / (hp - lp)) if lq <= lp and hp <= hq else INF


def ref_pareto(xp, ap, xq, aq):
    if xp < xq:
        return INF
    return mpmath.log(ap / aq) + aq * mpmath.log(xp / xq) + aq / ap - 1


def exponential_cases(dtype):
    cases = [(s, s * (1 + rel)) for s, rel in itertools.product(SCALES[dtype], RELS)]
    lo, hi = SCALES[dtype][0], SCALES[dtype][-1]
    return [*cases, (lo, hi), (hi, lo), (0.5, 3.0)]


def uniform_cases(dtype):
    cases = []
    for s, rel in itertools.product(SCALES[dtype], RELS):
        cases += [
            (-s, s, -s * (1 + rel), s),
            (2 * s, 3 * s, 2 * s, 3 * s * (1 + rel)),
            (-s, s, -s, s * (1 - rel)),  # p sticks out of q: +inf
        ]
    return [*cases, (0.0, 1.0, -5.0, 5.0), (-1.0, 1.0, 0.0, 2.0)]


def pareto_cases(dtype):
    cases = []
    for s, rel, a in itertools.product(SCALES[dtype], RELS, (0.5, 1e6)):
        cases += [
            (s, a, s, a * (1 + rel)),
            (s * (1 + rel), a, s, a),
            (s, a, s * (1 + rel), a),  # x_p < x_q: +inf
        ]
    return [*cases, (2.0, 3.0, 1.0, 0.5)]


# name -> (distribution class, reference, cases, generic (p params, q params) for Monte Carlo)
PAIRS = {
    "exponential": (td.Exponential, ref_exponential, exponential_cases, ((0.7,), (1.6,))),
    "laplace": (td.Laplace, ref_laplace, near_equal_loc_scale, ((0.3, 0.8), (-0.2, 1.3))),
    "gumbel": (td.Gumbel, ref_gumbel, near_equal_loc_scale, ((0.3, 0.8), (-0.2, 1.3))),
    "cauchy": (td.Cauchy, ref_cauchy, near_equal_loc_scale, ((0.3, 0.8), (-0.2, 1.3))),
    "uniform": (td.Uniform, ref_uniform, uniform_cases, ((-0.5, 1.5), (-1.0, 2.0))),
    "pareto": (td.Pareto, ref_pareto, pareto_cases, ((1.5, 2.5), (1.0, 1.5))),
}
FUNCTIONS = {
    "exponential": ls._kl_exponential_exponential,
    "laplace": ls._kl_laplace_laplace,
    "gumbel": ls._kl_gumbel_gumbel,
    "cauchy": ls._kl_cauchy_cauchy,
    "uniform": ls._kl_uniform_uniform,
    "pareto": ls._kl_pareto_pareto,
}


def _split(params):
    half = len(params) // 2
    return params[:half], params[half:]


def assert_accurate(value, refs, dtype):
    """float64: relative error ≤ 1e-10; float32: ≤ 1e-4, or absolute ≤ 1e-7 below KL 1e-3."""
    for v, ref in zip(value.reshape(-1).tolist(), refs, strict=True):
        if ref > torch.finfo(dtype).max:  # infinite, or beyond the dtype's range
            assert v == math.inf, (v, ref)
            continue
        assert v >= 0, (v, ref)
        err = abs(mpmath.mpf(v) - ref)
        if dtype == torch.float64:
            assert err <= 1e-10 * ref, (v, ref)
        else:
            assert err <= max(1e-4 * ref, 1e-7 if ref < 1e-3 else 0), (v, ref)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(PAIRS))
def test_matches_mpmath_at_hard_cases(name, dtype):
    cls, ref, make_cases, _ = PAIRS[name]
    columns = [torch.tensor(c, dtype=dtype) for c in zip(*make_cases(dtype), strict=True)]
    with mpmath.workdps(60):
        refs = [
            ref(*(mpmath.mpf(float(x)) for x in row))
            for row in zip(*(c.tolist() for c in columns), strict=True)
        ]
        p_args, q_args = _split(columns)
        p, q = cls(*p_args, validate_args=False), cls(*q_args, validate_args=False)
        assert_accurate(kl_divergence(p, q), refs, dtype)


def test_gumbel_distant_locations():
    # torch divides each location by its scale and returns 0.002436.
    f64 = torch.float64
    args = (-5657816778885.006, 1.0, -5657816778884.952, 0.98724)
    p = td.Gumbel(*(torch.tensor(a, dtype=f64) for a in args[:2]))
    q = td.Gumbel(*(torch.tensor(a, dtype=f64) for a in args[2:]))
    with mpmath.workdps(60):
        ref = ref_gumbel(*(mpmath.mpf(a) for a in args))
        assert_accurate(kl_divergence(p, q), [ref], f64)
    with torch_kl_only():
        assert abs(float(kl_divergence(p, q)) - float(ref)) > 1e-4


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(PAIRS))
def test_kl_with_itself_is_zero(name, dtype):
    cls, _, _, (p_params, _) = PAIRS[name]
    gen = torch.Generator().manual_seed(0)
    spread = torch.exp(torch.randn(500, generator=gen, dtype=dtype))
    params = [torch.tensor(v, dtype=dtype) * spread for v in p_params]
    p = cls(*params)
    assert torch.equal(kl_divergence(p, p), torch.zeros(500, dtype=dtype))
    scalar = cls(*(torch.tensor(v, dtype=dtype) for v in p_params))  # 0-d parameters
    assert torch.equal(kl_divergence(scalar, scalar), torch.zeros((), dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(PAIRS))
def test_never_negative_or_nan_near_equal(name, dtype):
    cls, _, _, (p_params, _) = PAIRS[name]
    gen = torch.Generator().manual_seed(1)
    n = 5000
    eps = torch.finfo(dtype).eps
    spread = torch.exp(torch.randn(n, generator=gen, dtype=dtype) * 3)
    base = [torch.tensor(v, dtype=dtype) * spread for v in p_params]
    if name == "uniform":  # perturb the width only outward, so that both stay finite
        other = [base[0] * (1 + eps * (base[0] > 0)), base[1] * (1 + eps)]
    else:
        other = [x * (1 + torch.randint(-3, 4, (n,), generator=gen) * eps) for x in base]
    for p, q in ((cls(*base), cls(*other)), (cls(*other), cls(*base))):
        value = kl_divergence(p, q)
        assert not bool(value.isnan().any())
        assert bool((value >= 0).all())


@pytest.mark.parametrize("name", list(PAIRS))
def test_agrees_with_monte_carlo(name):
    cls, _, _, (p_params, q_params) = PAIRS[name]
    p, q = cls(*p_params), cls(*q_params)
    est = probgen.mc_kl(p, q, num_samples=20_000, seed=0)
    exact = float(kl_divergence(p, q))
    # Uniform ‖ Uniform: the log-ratio is constant, the standard error ~0; allow the float32
    # rounding of log p − log q on top.
    rounding = 4 * torch.finfo(torch.float32).eps * (1 + exact)
    assert abs(float(est.value) - exact) <= 5 * float(est.stderr) + rounding


@pytest.mark.parametrize("name", list(PAIRS))
def test_broadcast_shapes(name):
    cls, _, _, (p_params, q_params) = PAIRS[name]
    p = cls(*(torch.full((3, 1), v) for v in p_params))
    q = cls(*(torch.full((4,), v) for v in q_params))
    value = kl_divergence(p, q)
    assert value.shape == (3, 4)
    assert torch.equal(value, kl_divergence(cls(*p_params), cls(*q_params)).expand(3, 4))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(PAIRS))
def test_gradients_finite(name, dtype):
    cls, _, _, (p_params, q_params) = PAIRS[name]
    # A generic point and p == q (where the float64 series paths are taken).
    params = [torch.tensor([a, a], dtype=dtype) for a in p_params] + [
        torch.tensor([b, a], dtype=dtype) for a, b in zip(p_params, q_params, strict=True)
    ]
    for x in params:
        x.requires_grad_()
    p_args, q_args = _split(params)
    kl_divergence(cls(*p_args), cls(*q_args)).sum().backward()
    for x in params:
        assert bool(torch.isfinite(x.grad).all()), (name, x.grad)


def test_gradcheck_float64():
    f64 = torch.float64
    x = [torch.tensor([0.3, 0.3], dtype=f64), torch.tensor([0.8, 0.8], dtype=f64)]
    y = [torch.tensor([-0.2, 0.3], dtype=f64), torch.tensor([1.3, 0.8 * (1 + 1e-9)], dtype=f64)]
    params = [t.requires_grad_() for t in (*x, *y)]
    for cls in (td.Laplace, td.Gumbel, td.Cauchy):

        def kl(a, b, c, d, cls=cls):
            return kl_divergence(cls(a, b), cls(c, d))

        assert torch.autograd.gradcheck(kl, params)


def _example(cls):
    examples = {
        td.Normal: td.Normal(0.0, 1.0),
        td.Laplace: td.Laplace(0.0, 1.0),
        td.Gumbel: td.Gumbel(0.0, 1.0),
        td.Cauchy: td.Cauchy(0.0, 1.0),
        td.Exponential: td.Exponential(1.0),
        td.HalfNormal: td.HalfNormal(1.0),
        td.LogNormal: td.LogNormal(0.0, 1.0),
        td.Pareto: td.Pareto(1.0, 2.0),
        td.Uniform: td.Uniform(0.0, 1.0),
    }
    return examples[cls]


@pytest.mark.parametrize(
    "pair", ls.SUPPORT_MISMATCHES, ids=lambda pair: f"{pair[0].__name__}-{pair[1].__name__}"
)
def test_support_mismatch_is_inf_of_the_broadcast_shape(pair):
    tp, tq = pair
    p, q = _example(tp), _example(tq).expand((2, 3))
    assert lookup(p, q) is ls._kl_infinity
    value = kl_divergence(p, q)
    assert value.shape == (2, 3) and bool((value == math.inf).all())


def test_torch_partial_infinities_are_inf_not_nan():
    # Pairs left to torch: finite where p's support fits in q's, +inf elsewhere.
    low = torch.tensor([-1.0, 0.5])
    p = td.Uniform(low, low + 1)
    for q in (td.Exponential(torch.tensor([2.0, 2.0])), td.Pareto(0.25, 2.0)):
        value = kl_divergence(p, q)
        assert value[0] == math.inf
        assert math.isfinite(float(value[1])) and float(value[1]) >= 0


@pytest.mark.parametrize("name", list(PAIRS))
def test_torch_kl_divergence_dispatches_to_probgen(name):
    cls, _, _, (p_params, q_params) = PAIRS[name]
    p, q = cls(*p_params), cls(*q_params)
    assert lookup(p, q) is FUNCTIONS[name]
    assert probgen.kl.probgen_pairs()[cls, cls] is FUNCTIONS[name]
