"""Gamma, Exponential ↔ Gamma and Weibull → Gamma KL against mpmath, Monte Carlo and torch."""

from __future__ import annotations

import math
import random

import mpmath as mp
import pytest
import torch
from kl_targets import check_target as _check
from torch.distributions import Beta, Exponential, Gamma, Kumaraswamy, Weibull
from torch.distributions import kl_divergence as torch_kl

import probgen
from probgen.kl import exponential, gamma
from probgen.kl.registry import lookup

SCALES = {torch.float64: (1e-30, 1e30), torch.float32: (1e-6, 1e6)}


def _ref_gamma(ap, bp, aq, bq):
    ap, bp, aq, bq = map(mp.mpf, (ap, bp, aq, bq))
    return (
        (ap - aq) * mp.digamma(ap)
        - mp.loggamma(ap)
        + mp.loggamma(aq)
        + aq * (mp.log(bp) - mp.log(bq))
        + ap * (bq - bp) / bp
    )


def _ref_weibull_gamma(lam, k, a, b):
    lam, k, a, b = map(mp.mpf, (lam, k, a, b))
    return (
        mp.log(k)
        + mp.loggamma(a)
        - a * mp.log(b * lam)
        + mp.euler * (a / k - 1)
        - 1
        + b * lam * mp.gamma(1 + 1 / k)
    )


def _hard_cases(dtype, n=150):
    """Near-equal (relative difference 1e-3 … 1e-12) and far pairs over the dtype's scales."""
    rng = random.Random(1)
    lo, hi = SCALES[dtype]
    for _ in range(n):
        ap = math.exp(rng.uniform(math.log(max(lo, 1e-6)), math.log(min(hi, 1e6))))
        bp = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        rel = rng.choice([1e-12, 1e-9, 1e-6, 1e-3, 0.5, 5.0])
        if dtype == torch.float32:
            rel = max(rel, 1e-6)
        if rel < 0.1:
            aq = ap * (1 + rel * rng.uniform(-1, 1))
            bq = bp * (1 + rel * rng.uniform(-1, 1))
        else:
            aq = ap * math.exp(rng.uniform(-rel, rel))
            bq = bp * math.exp(rng.uniform(-rel, rel))
        yield [torch.tensor(v, dtype=dtype) for v in (ap, bp, aq, bq)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gamma_gamma_against_mpmath(dtype):
    cases = list(_hard_cases(dtype))
    params = [torch.stack(col) for col in zip(*cases, strict=True)]
    values = probgen.kl_divergence(Gamma(params[0], params[1]), Gamma(params[2], params[3]))
    with mp.workdps(120):
        for v, *ps in zip(values.tolist(), *(p.tolist() for p in params), strict=True):
            _check(v, _ref_gamma(*ps), dtype)


def test_torch_counterexample_float32():
    p = Gamma(torch.tensor(2947581.0), torch.tensor(2.0780566))
    q = Gamma(torch.tensor(2944633.5), torch.tensor(2.0759785))
    ref = _ref_gamma(2947581.0, float(p.rate), 2944633.5, float(q.rate))
    _check(probgen.kl_divergence(p, q).item(), ref, torch.float32)
    with probgen.torch_kl_only():
        assert torch_kl(p, q).item() < 0  # the failure this module fixes


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_exponential_gamma_both_ways(dtype):
    rng = random.Random(2)
    for _ in range(40):
        lam = 10 ** rng.uniform(-5, 5)
        a = rng.choice([1.0, 1 + 1e-6, 1 - 1e-3, 10 ** rng.uniform(-3, 3)])
        b = lam * rng.choice([1.0, 1 + 1e-6, 10 ** rng.uniform(-2, 2)])
        lam_t, a_t, b_t = (torch.tensor(v, dtype=dtype) for v in (lam, a, b))
        lam, a, b = float(lam_t), float(a_t), float(b_t)
        with mp.workdps(60):
            v = probgen.kl_divergence(Exponential(lam_t), Gamma(a_t, b_t)).item()
            _check(v, _ref_gamma(1.0, lam, a, b), dtype)
            v = probgen.kl_divergence(Gamma(a_t, b_t), Exponential(lam_t)).item()
            _check(v, _ref_gamma(a, b, 1.0, lam), dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_weibull_gamma_against_mpmath(dtype):
    cases = [
        (2.0, 1.5, 3.0, 0.7),
        (1.0, 1.0, 1.0, 1.0 * (1 + 1e-6)),
        (1.3, 1.0 + 1e-5, 1.0, 1 / 1.3),
        (0.5, 20.0, 50.0, 90.0),
        (1e3, 0.3, 0.2, 1e-3),
        (1e-4, 3.0, 1e4, 2e7),
    ]
    for case in cases:
        ts = [torch.tensor(v, dtype=dtype) for v in case]
        v = probgen.kl_divergence(Weibull(ts[0], ts[1]), Gamma(ts[2], ts[3])).item()
        with mp.workdps(60):
            _check(v, _ref_weibull_gamma(*(float(t) for t in ts)), dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_self_divergence_is_zero(dtype):
    a = torch.tensor([1e-6, 0.3, 1.0, 4.99, 7.5, 3e4, 1e6], dtype=dtype)
    b = torch.tensor([2.0, 1e-3, 1.0, 7.0, 1e5, 0.5, 3.0], dtype=dtype)
    assert torch.equal(probgen.kl_divergence(Gamma(a, b), Gamma(a, b)), torch.zeros_like(a))
    assert torch.equal(
        probgen.kl_divergence(Exponential(b), Gamma(torch.ones_like(b), b)), torch.zeros_like(b)
    )
    one = torch.ones_like(b)
    assert probgen.kl_divergence(Weibull(1 / b, one), Gamma(one, b)).abs().max() <= 1e-15


@pytest.mark.parametrize(
    ("p", "q"),
    [
        (Gamma(torch.tensor(2.0), torch.tensor(3.0)), Gamma(torch.tensor(3.5), torch.tensor(1.5))),
        (
            Weibull(torch.tensor(1.5), torch.tensor(2.0)),
            Gamma(torch.tensor(3.0), torch.tensor(2.0)),
        ),
        (Exponential(torch.tensor(2.0)), Gamma(torch.tensor(0.7), torch.tensor(1.0))),
        (Gamma(torch.tensor(2.0), torch.tensor(3.0)), Exponential(torch.tensor(1.0))),
    ],
)
def test_monte_carlo(p, q):
    mc = probgen.mc_kl(p, q, 20000, seed=0)
    assert abs(probgen.kl_divergence(p, q) - mc.value) <= 5 * mc.stderr


def test_broadcasting_and_gradients():
    ap = torch.tensor([0.5, 3.0, 40.0], requires_grad=True)
    bq = torch.tensor([[1.0], [2.0]], requires_grad=True)
    kl = probgen.kl_divergence(Gamma(ap, torch.tensor(1.0)), Gamma(ap.detach() * 1.001, bq))
    assert kl.shape == (2, 3)
    kl.sum().backward()
    assert torch.isfinite(ap.grad).all() and torch.isfinite(bq.grad).all()
    lam = torch.tensor([0.5, 2.0], requires_grad=True)
    probgen.kl_divergence(Weibull(lam, torch.tensor(1.5)), Gamma(2.0, 1.0)).sum().backward()
    assert torch.isfinite(lam.grad).all()


def test_dispatch_and_infinite_pairs():
    p, q = Gamma(torch.tensor(2.0), torch.tensor(1.0)), Gamma(torch.tensor(3.0), torch.tensor(2.0))
    assert lookup(p, q) is gamma._kl_gamma_gamma
    assert torch_kl(p, q) == probgen.kl_divergence(p, q)
    w = Weibull(torch.ones(2), torch.ones(2))
    assert torch_kl(w, Gamma(1.0, 1.0)).shape == (2,)
    for left in (w, p, Exponential(torch.ones(3))):
        out = torch_kl(left, Kumaraswamy(torch.ones(2, 1, 1), torch.ones(1)))
        assert torch.isinf(out).all() and (out > 0).all()
    assert torch.isinf(torch_kl(w, Beta(2.0, 2.0))).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_near_the_root_of_digamma_and_of_lgamma(dtype):
    # ψ(1.4616…) = 0 and log Γ(1) = log Γ(2) = 0: the textbook terms are tiny there while
    # digamma's absolute error is not; the rounding bound must send such elements elsewhere.
    rels = [1e-3, -1e-3, 0.05] if dtype == torch.float32 else [1e-9, -1e-6, 1e-3, 0.05]
    for base in (1.4616321449683622, 1.0, 2.0):
        for rel in rels:
            ap, aq = (torch.tensor(v, dtype=dtype) for v in (base, base * (1 + rel)))
            for bp, bq in ((1.0, 1.0), (2.0, 2.0 * (1 + rel))):
                bp_t, bq_t = torch.tensor(bp, dtype=dtype), torch.tensor(bq, dtype=dtype)
                v = probgen.kl_divergence(Gamma(ap, bp_t), Gamma(aq, bq_t)).item()
                with mp.workdps(60):
                    _check(v, _ref_gamma(float(ap), float(bp_t), float(aq), float(bq_t)), dtype)


def test_weibull_gamma_near_equal_grid_float32():
    # Weibull(λ, 1) = Gamma(1, 1/λ): shape, concentration and rate each perturbed by 1e-6 …
    # 1e-3 in both directions over the float32 scales. (float64 at relative differences
    # ≤ 1e-6 reaches ~1e-10 … 4e-3 only: docs/kl/gamma_beta.md.)
    dtype = torch.float32
    for lam in (1e-6, 1.0, 1e6):
        for r1 in (1e-6, 1e-3):
            for r2 in (1e-6, 1e-3):
                for s in (1, -1):
                    ts = [
                        torch.tensor(v, dtype=dtype)
                        for v in (lam, 1 + s * r1, 1 - s * r2, (1 + r1) / lam)
                    ]
                    v = probgen.kl_divergence(Weibull(ts[0], ts[1]), Gamma(ts[2], ts[3])).item()
                    with mp.workdps(60):
                        _check(v, _ref_weibull_gamma(*(float(t) for t in ts)), dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_exponential_gamma_batched_against_mpmath(dtype):
    # One batch mixing elements kept in the fast path and elements redone (near-equal laws,
    # concentrations near 1, far rates): the selection and scatter of the redone ones.
    g = torch.Generator().manual_seed(5)
    n = 200
    lam = torch.exp(torch.randn(n, generator=g, dtype=torch.float64) * 3)
    a = torch.exp(torch.randn(n, generator=g, dtype=torch.float64) * 2)
    a[::4] = 1 + torch.randn(n // 4, generator=g, dtype=torch.float64) * 1e-4
    b = lam * torch.exp(torch.randn(n, generator=g, dtype=torch.float64))
    b[::4] = lam[::4] * (1 + 1e-5)
    lam_t, a_t, b_t = lam.to(dtype), a.to(dtype), b.to(dtype)
    values = probgen.kl_divergence(
        Exponential(lam_t.reshape(10, 20)), Gamma(a_t.reshape(10, 20), b_t.reshape(10, 20))
    )
    assert values.shape == (10, 20)
    with mp.workdps(60):
        for v, x, y, z in zip(
            values.flatten().tolist(), lam_t.tolist(), a_t.tolist(), b_t.tolist(), strict=True
        ):
            _check(v, _ref_gamma(1.0, x, y, z), dtype)


@pytest.mark.parametrize("direction", ["exponential_gamma", "gamma_exponential"])
def test_float32_shape_near_one_against_mpmath(direction):
    # Concentrations 0.8…1.25 with ρ within 1e-3 of 1: the shape part's float32 terms
    # (~|α − 1|) cancel to ~0.32(α − 1)², which the float64 sum keeps; the values are kept in the
    # fast path (no element redone), each within the float32 target of mpmath.
    g = torch.Generator().manual_seed(7)
    n = 200
    lam = torch.exp(torch.randn(n, generator=g, dtype=torch.float64))
    a = torch.exp(torch.empty(n, dtype=torch.float64).uniform_(-0.22, 0.22, generator=g))
    near = 1 + 1e-3 * torch.randn(n, generator=g, dtype=torch.float64)
    b = lam * a * near if direction == "exponential_gamma" else lam * a / near
    lam_t, a_t, b_t = lam.float(), a.float(), b.float()
    if direction == "exponential_gamma":
        value, magnitude = exponential._exponential_gamma_split(lam_t, a_t, b_t)
        values = probgen.kl_divergence(Exponential(lam_t), Gamma(a_t, b_t))
    else:
        value, magnitude = exponential._gamma_exponential_split(a_t, b_t, lam_t)
        values = probgen.kl_divergence(Gamma(a_t, b_t), Exponential(lam_t))
    bound = gamma._EXP_GAMMA_ULPS * torch.finfo(torch.float32).eps * magnitude
    assert bool((bound <= (2.5e-5 * value).clamp_min(2.5e-8)).all())
    with mp.workdps(60):
        for v, x, y, z in zip(
            values.tolist(), lam_t.tolist(), a_t.tolist(), b_t.tolist(), strict=True
        ):
            ref = (
                _ref_gamma(1.0, x, y, z)
                if direction == "exponential_gamma"
                else _ref_gamma(y, z, 1.0, x)
            )
            _check(v, ref, torch.float32)


@pytest.mark.parametrize("direction", ["exponential_gamma", "gamma_exponential"])
def test_float32_gradients(direction):
    # With autograd the float32 path runs out of place: same values as without, and gradients
    # finite and within float32 rounding of the float64 ones (scaled by the sizes of the
    # derivative's terms: 1/λ, α/β, α/λ, β/λ², |log(β/λ)|, 1/α, ψ'(α)·|α − 1|).
    g = torch.Generator().manual_seed(8)
    lam = torch.exp(torch.randn(64, generator=g, dtype=torch.float64))
    a = torch.exp(torch.randn(64, generator=g, dtype=torch.float64))
    a[::4] = 1 + 1e-3 * torch.randn(16, generator=g, dtype=torch.float64)
    b = lam * torch.exp(torch.randn(64, generator=g, dtype=torch.float64))
    grads = {}
    for dtype in (torch.float32, torch.float64):
        params = [x.to(dtype).requires_grad_() for x in (lam, a, b)]

        def kl(params=params):
            if direction == "exponential_gamma":
                return probgen.kl_divergence(Exponential(params[0]), Gamma(params[1], params[2]))
            return probgen.kl_divergence(Gamma(params[1], params[2]), Exponential(params[0]))

        value = kl()
        value.sum().backward()
        grads[dtype] = [x.grad.double() for x in params]
        assert all(bool(torch.isfinite(gr).all()) for gr in grads[dtype])
        with torch.no_grad():
            assert torch.equal(kl(), value.detach())
    scale = (
        lam.reciprocal()
        + a / b
        + a / lam
        + b / lam**2
        + b / lam
        + lam / b
        + lam * a / b**2
        + torch.log(b / lam).abs()
        + 1 / a
        + torch.polygamma(1, a) * (a - 1).abs()
        + 1
    )
    for g32, g64 in zip(grads[torch.float32], grads[torch.float64], strict=True):
        assert bool(((g32 - g64).abs() <= 1e-5 * scale).all())


def test_gamma_gamma_float32_gradients():
    # The float32 split form (shape part in float64): the same values with and without autograd
    # (out of place and in place), finite gradients within float32 rounding of the float64 ones
    # (scaled by the sizes of the derivative's terms).
    g = torch.Generator().manual_seed(9)
    ap, bp, aq, bq = (
        torch.exp(torch.randn(64, generator=g, dtype=torch.float64)) for _ in range(4)
    )
    aq[::4] = ap[::4] * (1 + 1e-3 * torch.randn(16, generator=g, dtype=torch.float64))
    grads = {}
    for dtype in (torch.float32, torch.float64):
        params = [x.to(dtype).requires_grad_() for x in (ap, bp, aq, bq)]
        kl = probgen.kl_divergence(Gamma(params[0], params[1]), Gamma(params[2], params[3]))
        kl.sum().backward()
        grads[dtype] = [x.grad.double() for x in params]
        assert all(bool(torch.isfinite(gr).all()) for gr in grads[dtype])
        with torch.no_grad():
            again = probgen.kl_divergence(Gamma(params[0], params[1]), Gamma(params[2], params[3]))
        assert torch.equal(again, kl.detach())
    scale = (
        (ap - aq).abs() * torch.polygamma(1, ap)
        + torch.digamma(ap).abs()
        + torch.digamma(aq).abs()
        + torch.log(bp / bq).abs()
        + (aq + ap) / bp
        + ap * bq / bp**2
        + aq / bq
        + 1 / bp
        + 1
    )
    for g32, g64 in zip(grads[torch.float32], grads[torch.float64], strict=True):
        assert bool(((g32 - g64).abs() <= 1e-5 * scale).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exponential_gamma_broadcasting(dtype):
    # Each parameter the largest in turn (the float32 in-place path is taken for one shape only).
    lam = torch.tensor([[0.5, 2.0, 3.0], [1.0, 1.0, 1.0]], dtype=dtype)
    a = torch.tensor([1.7, 1.1, 1.2], dtype=dtype)
    b = torch.tensor([1.0, 2.0, 0.3], dtype=dtype)
    expected = probgen.kl_divergence(
        Exponential(lam), Gamma(a.expand(2, 3).clone(), b.expand(2, 3).clone())
    )
    assert probgen.kl_divergence(Exponential(lam), Gamma(a, b)).equal(expected)
    assert probgen.kl_divergence(Exponential(lam[0]), Gamma(a, b.expand(2, 3))).equal(
        probgen.kl_divergence(Exponential(lam[0].expand(2, 3).clone()), Gamma(a.expand(2, 3), b))
    )
    with mp.workdps(60):
        for v, x, y, z in zip(
            expected.flatten().tolist(),
            lam.flatten().tolist(),
            a.expand(2, 3).flatten().tolist(),
            b.expand(2, 3).flatten().tolist(),
            strict=True,
        ):
            _check(v, _ref_gamma(1.0, x, y, z), dtype)


def test_gamma_float32_broadcasting():
    # Broadcast parameters take the out-of-place float32 path, parameters of one shape the
    # in-place one: the same values.
    a = torch.tensor([[0.5, 2.0, 3.0], [1.0, 1.5, 7.0]])
    r = torch.tensor([1.7, 1.1, 0.2])
    full = r.expand(2, 3).clone()
    assert probgen.kl_divergence(Gamma(a, full), Gamma(full, 2 * full)).equal(
        probgen.kl_divergence(Gamma(a, full), Gamma(r, 2 * r))
    )
    assert probgen.kl_divergence(Gamma(a, full), Exponential(full)).equal(
        probgen.kl_divergence(Gamma(a, 1.0 * full), Exponential(r))
    )


def test_gamma_exponential_float64_close_laws_against_mpmath():
    # α within 1e-2 of 1 and ρ = λα/β within 1e-2 of 1: torch's formula cancels there (these
    # go to the split form), and α within 1e-7 of 1 (on to gamma_kl); finite gradients.
    g = torch.Generator().manual_seed(11)
    n = 120
    lam = torch.exp(torch.randn(n, generator=g, dtype=torch.float64) * 2)
    a = 1 + 1e-2 * torch.randn(n, generator=g, dtype=torch.float64)
    a[::6] = 1 + 1e-7 * torch.randn(n // 6, generator=g, dtype=torch.float64)
    b = lam * a * (1 + 1e-2 * torch.randn(n, generator=g, dtype=torch.float64))
    params = [x.clone().requires_grad_() for x in (a, b, lam)]
    values = probgen.kl_divergence(Gamma(params[0], params[1]), Exponential(params[2]))
    values.sum().backward()
    assert all(bool(torch.isfinite(x.grad).all()) for x in params)
    with mp.workdps(60):
        for v, x, y, z in zip(values.tolist(), a.tolist(), b.tolist(), lam.tolist(), strict=True):
            _check(v, _ref_gamma(x, y, 1.0, z), torch.float64)
