"""Cross-family pairs that probgen corrects: support tests, float32 evaluation."""

import math

import pytest
import torch
from scipy import integrate
from torch.distributions import Beta, ContinuousBernoulli, Exponential, Gamma, Normal, Uniform

import probgen
from probgen.kl import torch_kl_only

F64 = torch.float64


def _quad_kl(p, q, lo, hi):
    def integrand(x):
        t = torch.tensor(x, dtype=F64)
        lp = p.log_prob(t)
        return float(lp.exp() * (lp - q.log_prob(t)))

    value, err = integrate.quad(integrand, lo, hi, epsabs=1e-13, epsrel=1e-12, limit=200)
    return value, err


def test_uniform_inside_the_unit_interval_has_finite_kl():
    p = Uniform(torch.tensor(0.0, dtype=F64), torch.tensor(1.0, dtype=F64))
    q = ContinuousBernoulli(torch.tensor(0.3, dtype=F64))
    expected, err = _quad_kl(p, q, 0.0, 1.0)
    assert err < 1e-10
    assert probgen.kl_divergence(p, q).item() == pytest.approx(expected, rel=1e-10)
    with torch_kl_only():
        assert probgen.kl_divergence(p, q).item() == math.inf  # torch's support test


def test_continuous_bernoulli_against_unit_uniform_is_minus_entropy():
    p = ContinuousBernoulli(torch.tensor(0.3, dtype=F64))
    q = Uniform(torch.tensor(0.0, dtype=F64), torch.tensor(1.0, dtype=F64))
    expected, err = _quad_kl(p, q, 0.0, 1.0)
    assert err < 1e-10
    assert probgen.kl_divergence(p, q).item() == pytest.approx(expected, rel=1e-10)


def test_support_mismatches_are_infinite():
    cb = ContinuousBernoulli(torch.tensor([0.3, 0.3, 0.3]))
    u = Uniform(torch.tensor([-0.1, 0.0, 0.2]), torch.tensor([1.0, 1.2, 0.9]))
    kl = probgen.kl_divergence(u, cb)
    assert kl[:2].tolist() == [math.inf, math.inf] and math.isfinite(kl[2])
    u2 = Uniform(torch.tensor([-0.1, 0.1, 0.0]), torch.tensor([1.0, 1.0, 0.9]))
    kl = probgen.kl_divergence(cb, u2)
    assert math.isfinite(kl[0]) and kl[1:].tolist() == [math.inf, math.inf]


@pytest.mark.parametrize(
    "q",
    [
        ContinuousBernoulli(torch.tensor(0.4)),
        Exponential(torch.tensor(2.0)),
        Gamma(torch.tensor(2.0), torch.tensor(3.0)),
        Normal(torch.tensor(0.6), torch.tensor(0.1)),
        Uniform(torch.tensor(0.0), torch.tensor(1.0)),
    ],
    ids=lambda q: type(q).__name__,
)
def test_beta_pairs_in_float32_match_float64(q):
    p = Beta(torch.tensor(3e4), torch.tensor(2e4))
    p64 = Beta(torch.tensor(3e4, dtype=F64), torch.tensor(2e4, dtype=F64))
    _ = getattr(q, "logits", None)  # a cached alternative parametrisation must not matter
    q64 = type(q)(*[getattr(q, k).double() for k in _params(q)])
    got, expected = probgen.kl_divergence(p, q), probgen.kl_divergence(p64, q64)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected.item(), rel=1e-4)


def _params(q):
    return {
        ContinuousBernoulli: ["probs"],
        Exponential: ["rate"],
        Gamma: ["concentration", "rate"],
        Normal: ["loc", "scale"],
        Uniform: ["low", "high"],
    }[type(q)]


def _mp_beta_kl(a, b, q):
    """KL(Beta(a, b) ‖ q) at 50 digits: −H(p) − E_p[log q(x)] from the textbook formulas."""
    import mpmath as mp

    mp.mp.dps = 50
    a, b = mp.mpf(a), mp.mpf(b)
    a0 = a + b
    neg_h = -mp.log(mp.beta(a, b)) + (a - 1) * mp.digamma(a) + (b - 1) * mp.digamma(b)
    neg_h -= (a0 - 2) * mp.digamma(a0)
    mean, var = a / a0, a * b / (a0**2 * (a0 + 1))
    if isinstance(q, Exponential):
        rate = mp.mpf(q.rate.item())
        rest = rate * mean - mp.log(rate)
    elif isinstance(q, Uniform):
        rest = mp.log(mp.mpf(q.high.item()) - mp.mpf(q.low.item()))
    elif isinstance(q, Normal):
        mu, sigma = mp.mpf(q.loc.item()), mp.mpf(q.scale.item())
        rest = mp.log(2 * mp.pi * sigma**2) / 2 + ((mean - mu) ** 2 + var) / (2 * sigma**2)
    else:
        eta = mp.mpf(q.logits.double().item())
        rest = mp.log(mp.expm1(eta) / eta) - eta * mean
    return float(neg_h + rest)


_BETA_POINTS = [(1.0, 1.0), (1.0009765625, 0.99951171875), (0.5, 3.0), (1e-3, 2.0), (3e4, 2e4)]
_BETA_POINTS += [(1e6, 1e6), (2.5, 1e5)]


@pytest.mark.parametrize(
    "q",
    [
        ContinuousBernoulli(torch.tensor(0.4)),
        Exponential(torch.tensor(2.0)),
        Normal(torch.tensor(0.6), torch.tensor(0.1)),
        Normal(torch.tensor(0.5), torch.tensor(0.0005)),
        Uniform(torch.tensor(0.0), torch.tensor(1.0)),
    ],
    ids=lambda q: type(q).__name__,
)
def test_beta_pairs_in_float32_meet_the_target_against_mpmath(q):
    a = torch.tensor([x for x, _ in _BETA_POINTS])
    b = torch.tensor([y for _, y in _BETA_POINTS])
    got = probgen.kl_divergence(Beta(a, b), q)
    assert got.dtype == torch.float32
    for i, (x, y) in enumerate(_BETA_POINTS):
        expected = _mp_beta_kl(a[i].item(), b[i].item(), q)
        tolerance = 1e-7 if expected < 1e-3 else 1e-4 * expected
        assert abs(got[i].item() - expected) <= tolerance, (x, y, got[i].item(), expected)


def test_beta_pairs_in_float32_broadcast_and_have_finite_gradients():
    a = torch.tensor([[0.7], [1.0], [3e4]], requires_grad=True)
    b = torch.tensor([[2.0], [1.0], [2e4]], requires_grad=True)
    rate = torch.tensor([0.5, 1.0, 2.0, 4.0], requires_grad=True)
    kl = probgen.kl_divergence(Beta(a, b), Exponential(rate))
    assert kl.shape == (3, 4) and bool((kl >= 0).all())
    kl.sum().backward()
    for t in (a, b, rate):
        assert bool(torch.isfinite(t.grad).all())


def test_beta_uniform_in_float32_is_infinite_outside_the_support():
    p = Beta(torch.tensor([2.0, 2.0, 2.0]), torch.tensor([3.0, 3.0, 3.0]))
    q = Uniform(torch.tensor([0.0, 0.1, -1.0]), torch.tensor([1.0, 1.0, 0.9]))
    kl = probgen.kl_divergence(p, q)
    assert math.isfinite(kl[0].item()) and kl[1:].tolist() == [math.inf, math.inf]
