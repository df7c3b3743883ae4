"""Discrete closed forms: Bernoulli, Categorical/OneHotCategorical, Binomial, Geometric, Poisson.

References are computed independently in mpmath (60 digits) from the textbook sums, from the
parameters exactly as the distributions store them.
"""

from __future__ import annotations

import math

import mpmath as mp
import pytest
import torch
from torch.distributions import (
    Bernoulli,
    Binomial,
    Categorical,
    Geometric,
    OneHotCategorical,
    Poisson,
)
from torch.distributions import kl_divergence as torch_kl

import probgen
from probgen.kl import bernoulli, categorical, counts
from probgen.kl.registry import lookup

mp.mp.dps = 60
RTOL = {torch.float64: 1e-10, torch.float32: 1e-4}
DTYPES = [torch.float64, torch.float32]


def _close(value: float, ref, dtype: torch.dtype) -> bool:
    ref = float(ref)
    if dtype == torch.float32 and ref < 1e-3 and abs(value - ref) <= 1e-7:
        return True
    return abs(value - ref) <= RTOL[dtype] * abs(ref)


def _ref_binary(p, q):
    p, q = mp.mpf(p), mp.mpf(q)
    t1 = 0 if p == 0 else p * mp.log(p / q)
    t2 = 0 if p == 1 else (1 - p) * mp.log((1 - p) / (1 - q))
    return t1 + t2


def _mp_sigmoid(x):
    return 1 / (1 + mp.exp(-mp.mpf(x)))


def _near_pairs(dtype):
    """(p, q) probabilities: near-equal at relative differences 1e-3 … 1e-12, near 0 and 1."""
    out = []
    rels = [1e-3, 1e-6, 1e-9, 1e-12] if dtype == torch.float64 else [1e-3, 1e-5]
    for p in [0.3, 0.5, 1e-12, 1e-6, 0.999]:
        for r in rels:
            out.append((p, p * (1 + r)))
    out += [(1e-12, 0.5), (0.5, 1e-20 if dtype == torch.float64 else 1e-30), (1 - 1e-7, 0.3)]
    return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_bernoulli_probs_reference(dtype):
    for p, q in _near_pairs(dtype):
        pt, qt = torch.tensor(p, dtype=dtype), torch.tensor(q, dtype=dtype)
        if pt == qt:
            continue
        value = torch_kl(Bernoulli(pt), Bernoulli(qt)).item()
        assert _close(value, _ref_binary(pt.item(), qt.item()), dtype), (p, q, value)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bernoulli_logits_reference(dtype):
    rels = [1e-3, 1e-6, 1e-9, 1e-12] if dtype == torch.float64 else [1e-3, 1e-5]
    cases = [(a, a * (1 + r)) for a in [-30.0, -2.0, 0.7, 25.0] for r in rels]
    cases += [(-32.47, 39.42), (60.0, 70.0), (0.0, 1e-6)]
    for a, b in cases:
        at, bt = torch.tensor(a, dtype=dtype), torch.tensor(b, dtype=dtype)
        if at == bt:
            continue
        value = torch_kl(Bernoulli(logits=at), Bernoulli(logits=bt)).item()
        pa = _mp_sigmoid(at.item())
        ref = pa * (mp.mpf(at.item()) - bt.item()) + mp.log(
            (1 + mp.exp(bt.item())) / (1 + mp.exp(at.item()))
        )
        assert _close(value, ref, dtype), (a, b, value, float(ref))


def test_bernoulli_torch_failures_fixed():
    d = torch.float64
    v = torch_kl(Bernoulli(torch.tensor(0.5, dtype=d)), Bernoulli(torch.tensor(1e-20, dtype=d)))
    assert v.item() == pytest.approx(float(_ref_binary(0.5, 1e-20)), rel=1e-12)
    a, b = torch.tensor(-32.47, dtype=d), torch.tensor(39.42, dtype=d)
    v = torch_kl(Bernoulli(logits=a), Bernoulli(logits=b))
    assert math.isfinite(v.item()) and v.item() == pytest.approx(39.42, rel=1e-3)


def test_bernoulli_edges_and_infinity():
    p = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.3, 0.0])
    q = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0, 0.5])
    v = torch_kl(Bernoulli(p), Bernoulli(q))
    assert v[:2].tolist() == [0.0, 0.0]
    assert torch.isinf(v[2:5]).all() and (v[2:5] > 0).all()
    assert v[5].item() == pytest.approx(math.log(2), rel=1e-6)


def _ref_categorical(p, q):
    p = [mp.mpf(x) for x in p]
    q = [mp.mpf(x) for x in q]
    sp, sq = sum(p), sum(q)
    return sum(
        0 if a == 0 else a / sp * mp.log((a / sp) / (b / sq)) for a, b in zip(p, q, strict=True)
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_categorical_reference(dtype):
    g = torch.Generator().manual_seed(1)
    rels = [1e-3, 1e-6, 1e-9, 1e-12] if dtype == torch.float64 else [1e-3, 1e-5]
    for r in rels:
        logits = torch.randn(5, generator=g, dtype=dtype) * 3
        for given in ("logits", "probs"):
            if given == "logits":
                p, q = Categorical(logits=logits), Categorical(logits=logits * (1 + r))
            else:
                probs = logits.softmax(-1)
                p, q = Categorical(probs=probs), Categorical(probs=probs * (1 + r * logits))
            value = categorical.categorical_kl(p, q).item()
            ref = _ref_categorical(p.probs.tolist(), q.probs.tolist())
            if given == "logits":  # from the stored logits themselves
                ea = [mp.exp(mp.mpf(x)) for x in p.logits.tolist()]
                eb = [mp.exp(mp.mpf(x)) for x in q.logits.tolist()]
                ref = _ref_categorical(ea, eb)
            assert _close(value, ref, dtype), (r, given, value, float(ref))


def test_categorical_onehot_cross_pairs_and_dispatch():
    probs = torch.tensor([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]], dtype=torch.float64)
    other = torch.tensor([0.3, 0.3, 0.4], dtype=torch.float64)
    expected = torch.tensor(
        [float(_ref_categorical(r, other.tolist())) for r in probs.tolist()], dtype=torch.float64
    )
    for P in (Categorical, OneHotCategorical):
        for Q in (Categorical, OneHotCategorical):
            p, q = P(probs=probs), Q(probs=other)
            assert lookup(p, q).__module__ == "probgen.kl.categorical"
            direct = categorical.categorical_kl(p, q)
            via_torch = torch_kl(p, q)
            assert direct.shape == (2,)
            torch.testing.assert_close(direct, expected.double(), rtol=1e-12, atol=0)
            torch.testing.assert_close(via_torch, direct, rtol=0, atol=0)


def test_categorical_support_and_class_count():
    p = Categorical(probs=torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]]))
    q = Categorical(probs=torch.tensor([[0.5, 0.0, 0.5], [0.5, 0.5, 0.0]]))
    v = torch_kl(p, q)
    assert math.isinf(v[0].item()) and v[1].item() == pytest.approx(math.log(2), rel=1e-6)
    masked = Categorical(logits=torch.tensor([0.0, -math.inf, 1.0]))
    assert torch_kl(masked, masked).item() == 0.0
    with pytest.raises(ValueError, match="number of classes"):
        categorical.categorical_kl(
            Categorical(probs=torch.ones(3)), Categorical(probs=torch.ones(4))
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_poisson_reference(dtype):
    scales = [1e-30, 1e-6, 1.0, 1e6, 1e30] if dtype == torch.float64 else [1e-6, 1.0, 1e6]
    rels = [1e-3, 1e-6, 1e-9, 1e-12] if dtype == torch.float64 else [1e-3, 1e-5]
    for lam in scales:
        for r in [*rels, 0.5, 3.0]:
            a, b = torch.tensor(lam, dtype=dtype), torch.tensor(lam * (1 + r), dtype=dtype)
            x, y = mp.mpf(a.item()), mp.mpf(b.item())
            value = torch_kl(Poisson(a), Poisson(b)).item()
            assert _close(value, x * mp.log(x / y) - x + y, dtype), (lam, r, value)


def test_poisson_torch_failures_fixed():
    d = torch.float64
    a = torch.tensor(2.1961443730133855e24, dtype=d)
    b = torch.tensor(2.1961443510519416e24, dtype=d)
    x, y = mp.mpf(a.item()), mp.mpf(b.item())
    assert torch_kl(Poisson(a), Poisson(b)).item() == pytest.approx(
        float(x * mp.log(x / y) - x + y), rel=1e-10
    )
    zero, one = torch.tensor(0.0), torch.tensor(1.0)
    assert torch_kl(Poisson(zero), Poisson(one)).item() == 1.0
    assert torch_kl(Poisson(zero), Poisson(zero)).item() == 0.0
    assert torch_kl(Poisson(one), Poisson(zero)).item() == math.inf


@pytest.mark.parametrize("dtype", DTYPES)
def test_geometric_reference(dtype):
    rels = [1e-3, 1e-6, 1e-9, 1e-12] if dtype == torch.float64 else [1e-3, 1e-5]
    for p in [1.6e-4, 0.3, 0.9, 1.0]:
        for r in rels:
            pt, qt = torch.tensor(p, dtype=dtype), torch.tensor(p * (1 - r), dtype=dtype)
            value = torch_kl(Geometric(pt), Geometric(qt)).item()
            ref = _ref_binary(pt.item(), qt.item()) / mp.mpf(pt.item())
            assert _close(value, ref, dtype), (p, r, value)
    for probs in (torch.tensor(1.6e-4, dtype=dtype),):
        assert torch_kl(Geometric(probs), Geometric(probs)).item() == 0.0
        logits = torch.log(probs) - torch.log1p(-probs)
        assert torch_kl(Geometric(logits=logits), Geometric(logits=logits)).item() == 0.0


def _ref_binomial(n, p, m, q):
    n, m, p, q = int(n), int(m), mp.mpf(p), mp.mpf(q)
    total = mp.mpf(0)
    for k in range(n + 1):
        w = mp.binomial(n, k) * p**k * (1 - p) ** (n - k)
        if w == 0:
            continue
        wq = mp.binomial(m, k) * q**k * (1 - q) ** (m - k) if k <= m else 0
        if wq == 0:
            return mp.inf
        total += w * mp.log(w / wq)
    return total


@pytest.mark.parametrize("dtype", DTYPES)
def test_binomial_reference(dtype):
    d = dtype
    v = torch_kl(Binomial(10, torch.tensor(1.0, dtype=d)), Binomial(10, torch.tensor(0.5, dtype=d)))
    assert _close(v.item(), 10 * mp.log(2), dtype)
    rels = [1e-3, 1e-6, 1e-9, 1e-12] if dtype == torch.float64 else [1e-3, 1e-5]
    for p in [0.3, 1e-6]:
        for r in rels:
            pt, qt = torch.tensor(p, dtype=d), torch.tensor(p * (1 + r), dtype=d)
            value = torch_kl(Binomial(7, pt), Binomial(7, qt)).item()
            assert _close(value, 7 * _ref_binary(pt.item(), qt.item()), dtype)
    # different total counts: the exact sum
    for n, m, p, q in [(10, 12, 0.3, 0.4), (5, 40, 0.7, 0.1), (3, 3, 0.2, 0.6), (0, 4, 0.5, 0.5)]:
        pt, qt = torch.tensor(p, dtype=d), torch.tensor(q, dtype=d)
        value = counts.binomial_kl_sum(Binomial(n, pt), Binomial(m, qt)).item()
        assert _close(value, _ref_binomial(n, pt.item(), m, qt.item()), dtype), (n, m, value)


def test_binomial_mixed_counts_and_supports():
    d = torch.float64
    n = torch.tensor([10.0, 12.0, 10.0, 12.0, 4.0])
    probs = torch.tensor([0.3, 0.3, 0.0, 0.0, 1.0], dtype=d)
    q = Binomial(torch.tensor(10.0), torch.tensor([0.4, 0.4, 0.4, 0.4, 0.4], dtype=d))
    p = Binomial(n.to(d), probs)
    v = torch_kl(p, q)
    expected = [
        _ref_binomial(a, b, 10, 0.4) for a, b in zip(n.tolist(), probs.tolist(), strict=True)
    ]
    assert math.isinf(v[1].item()) and math.isinf(float(expected[1]))
    for i in (0, 2, 3, 4):
        assert v[i].item() == pytest.approx(float(expected[i]), rel=1e-10), i
    logits = Binomial(10, logits=torch.tensor([0.3], dtype=d))
    wider = Binomial(13, logits=torch.tensor([-0.2], dtype=d))
    assert torch_kl(logits, wider).item() == pytest.approx(
        float(_ref_binomial(10, _mp_sigmoid(0.3), 13, _mp_sigmoid(-0.2))), rel=1e-10
    )


PAIRS = [
    lambda d: (Bernoulli(torch.tensor(0.3, dtype=d)), Bernoulli(torch.tensor(0.55, dtype=d))),
    lambda d: (Bernoulli(logits=torch.tensor(0.3, dtype=d)), Bernoulli(torch.tensor(0.2, dtype=d))),
    lambda d: (
        Categorical(logits=torch.tensor([0.1, -1.0, 2.0], dtype=d)),
        Categorical(probs=torch.tensor([0.3, 0.3, 0.4], dtype=d)),
    ),
    lambda d: (
        OneHotCategorical(logits=torch.tensor([0.1, -1.0, 2.0], dtype=d)),
        OneHotCategorical(logits=torch.tensor([0.3, 0.3, 0.4], dtype=d)),
    ),
    lambda d: (Binomial(9, torch.tensor(0.3, dtype=d)), Binomial(9, torch.tensor(0.45, dtype=d))),
    lambda d: (Binomial(6, torch.tensor(0.3, dtype=d)), Binomial(9, torch.tensor(0.45, dtype=d))),
    lambda d: (Geometric(torch.tensor(0.3, dtype=d)), Geometric(torch.tensor(0.45, dtype=d))),
    lambda d: (Poisson(torch.tensor(3.0, dtype=d)), Poisson(torch.tensor(4.5, dtype=d))),
]


@pytest.mark.parametrize("make", PAIRS)
def test_monte_carlo_agrees(make):
    p, q = make(torch.float64)
    exact = probgen.kl_divergence(p, q, method="analytic")
    mc = probgen.mc_kl(p, q, num_samples=20000, seed=3)
    assert abs(exact.item() - mc.value.item()) <= 5 * mc.stderr.item()


@pytest.mark.parametrize("make", PAIRS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_self_kl_zero_and_nonnegative(make, dtype):
    p, q = make(dtype)
    assert torch_kl(p, p).item() == 0.0
    assert torch_kl(p, q).item() > 0


def test_broadcasting_shapes():
    p = Bernoulli(torch.rand(4, 1))
    q = Bernoulli(logits=torch.randn(3))
    assert torch_kl(p, q).shape == (4, 3)
    assert torch_kl(Poisson(torch.rand(2, 1) + 1), Poisson(torch.rand(5) + 1)).shape == (2, 5)
    c1 = Categorical(logits=torch.randn(4, 1, 6))
    c2 = OneHotCategorical(logits=torch.randn(3, 6))
    assert torch_kl(c1, c2).shape == (4, 3)
    b = torch_kl(
        Binomial(torch.tensor([[3.0], [5.0]]), torch.rand(2, 1)), Binomial(5, torch.rand(4))
    )
    assert b.shape == (2, 4) and torch.isfinite(b).all()


def test_gradients_finite():
    d = torch.float64
    a = torch.tensor([0.2, 0.7], dtype=d, requires_grad=True)
    b = torch.tensor([0.25, 0.1], dtype=d, requires_grad=True)
    la = torch.tensor([[0.3, -1.0, 2.0]], dtype=d, requires_grad=True)
    total = (
        torch_kl(Bernoulli(a), Bernoulli(b)).sum()
        + torch_kl(Bernoulli(logits=la[0, :2]), Bernoulli(b)).sum()
        + torch_kl(Geometric(a), Geometric(b)).sum()
        + torch_kl(Binomial(5, a), Binomial(5, b)).sum()
        + torch_kl(Binomial(4, a), Binomial(6, b)).sum()
        + torch_kl(Poisson(a), Poisson(b)).sum()
        + torch_kl(Categorical(logits=la), Categorical(logits=la.detach() * 0.5)).sum()
    )
    total.backward()
    for t in (a, b, la):
        assert torch.isfinite(t.grad).all() and (t.grad != 0).any()


def test_dispatch_is_probgen():
    cases = [
        (Bernoulli(0.3), Bernoulli(0.2), bernoulli),
        (Categorical(torch.ones(3)), Categorical(torch.ones(3)), categorical),
        (OneHotCategorical(torch.ones(3)), OneHotCategorical(torch.ones(3)), categorical),
        (Categorical(torch.ones(3)), OneHotCategorical(torch.ones(3)), categorical),
        (OneHotCategorical(torch.ones(3)), Categorical(torch.ones(3)), categorical),
        (Binomial(3, torch.tensor(0.3)), Binomial(3, torch.tensor(0.2)), counts),
        (Geometric(0.3), Geometric(0.2), counts),
        (Poisson(1.0), Poisson(2.0), counts),
    ]
    for p, q, module in cases:
        assert lookup(p, q).__module__ == module.__name__


def test_reading_the_other_parametrisation_does_not_change_the_kl():
    # torch caches a lazily computed parametrisation in __dict__ once it is read.
    p = Bernoulli(probs=torch.tensor(0.5, dtype=torch.float64))
    q = Bernoulli(probs=torch.tensor(1e-20, dtype=torch.float64))
    before = probgen.kl_divergence(p, q).item()
    _ = p.logits, q.logits
    assert probgen.kl_divergence(p, q).item() == before
    assert before == pytest.approx(22.333, abs=1e-3)


def test_categorical_with_very_negative_logits_in_float32():
    logits_p = torch.tensor([-127.0, -120.0, 0.0])
    logits_q = torch.tensor([-126.0, -121.0, 0.0])
    kl = probgen.kl_divergence(Categorical(logits=logits_p), Categorical(logits=logits_q))
    assert torch.isfinite(kl) and kl >= 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("cached", [False, True])
def test_categorical_batched_rows_around_the_fast_path_threshold(dtype, k, cached):
    # KLs from ~1e-4 to ~1 with large logits (mass ≫ KL): rows on both sides of the direct
    # sum's threshold, summed by the short-row path, against 60-digit sums of the stored logits.
    # cached: torch's softmax probabilities already read (and cached), which the KL then uses.
    g = torch.Generator().manual_seed(7 + k)
    rows = 60
    base = torch.randn(rows, k, generator=g, dtype=dtype) * 8
    scale = torch.logspace(-2, 0, rows, dtype=dtype).unsqueeze(-1)
    other = base + scale * torch.randn(rows, k, generator=g, dtype=dtype)
    p, q = Categorical(logits=base), Categorical(logits=other)
    if cached:
        _ = p.probs, q.probs
        assert "probs" in p.__dict__ and "probs" in q.__dict__
    values = categorical.categorical_kl(p, q)
    for row in range(rows):
        ea = [mp.exp(mp.mpf(x)) for x in p.logits[row].tolist()]
        eb = [mp.exp(mp.mpf(x)) for x in q.logits[row].tolist()]
        ref = _ref_categorical(ea, eb)
        assert _close(values[row].item(), ref, dtype), (row, values[row].item(), float(ref))


@pytest.mark.parametrize("dtype", DTYPES)
def test_poisson_batched_across_ratios_against_mpmath(dtype):
    # |u| = |λp − λq|/(λp + λq) from 1e-7 to 1 − 1e-6 across scales: both sides of the direct
    # form's threshold, and ratios where λp − λq rounds to −λq.
    g = torch.Generator().manual_seed(11)
    n = 300
    span = 13.0 if dtype == torch.float32 else 60.0
    x = torch.exp((torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * span)
    u = torch.exp(-torch.rand(n, generator=g, dtype=torch.float64) * 16).clamp_max(1 - 1e-6)
    u = u * torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).double()
    a, b = x.to(dtype), (x * (1 - u) / (1 + u)).to(dtype)
    a = torch.cat([a, torch.tensor([1e-10, 0.0, 3.0], dtype=dtype)])
    b = torch.cat([b, torch.tensor([1.0, 2.0, 3.0], dtype=dtype)])
    values = torch_kl(Poisson(a), Poisson(b))
    for v, xa, yb in zip(values.tolist(), a.tolist(), b.tolist(), strict=True):
        xm, ym = mp.mpf(xa), mp.mpf(yb)
        ref = ym if xa == 0 else xm * mp.log(xm / ym) - xm + ym
        assert _close(v, ref, dtype), (xa, yb, v, float(ref))


@pytest.mark.parametrize("dtype", DTYPES)
def test_categorical_cached_probs_agree_with_and_without_autograd(dtype):
    # Near-equal rows (term-by-term path) and generic rows (direct sum), with torch's cached
    # softmax probabilities: values match the uncached evaluation within the accuracy target
    # (the direct sum's few-eps absolute error is ≤ 3e-12 resp. 2e-5 relative above its
    # threshold), and gradients are finite and match too.
    g = torch.Generator().manual_seed(5)
    base = torch.randn(200, 4, generator=g, dtype=dtype) * 2
    scale = torch.logspace(-6, 0, 200, dtype=dtype).unsqueeze(-1)
    other = base + scale * torch.randn(200, 4, generator=g, dtype=dtype)
    tol = RTOL[dtype]
    plain = categorical.categorical_kl(Categorical(logits=base), Categorical(logits=other))
    p, q = Categorical(logits=base), Categorical(logits=other)
    _ = p.probs, q.probs
    cached = categorical.categorical_kl(p, q)
    torch.testing.assert_close(cached, plain, rtol=tol, atol=0)
    a = base.clone().requires_grad_()
    p, q = Categorical(logits=a), Categorical(logits=other)
    _ = p.probs, q.probs
    with_grad = categorical.categorical_kl(p, q)
    torch.testing.assert_close(with_grad.detach(), plain, rtol=tol, atol=0)
    (grad,) = torch.autograd.grad(with_grad.sum(), a)
    a2 = base.clone().requires_grad_()
    (grad_plain,) = torch.autograd.grad(
        categorical.categorical_kl(Categorical(logits=a2), Categorical(logits=other)).sum(), a2
    )
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(
        grad,
        grad_plain,
        rtol=1e-3 if dtype == torch.float32 else 1e-8,
        atol=1e-6 if dtype == torch.float32 else 1e-12,
    )
