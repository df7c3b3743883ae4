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
