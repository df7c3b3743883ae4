"""Jensen–Shannon divergence: exact sums, quadrature against scipy, Monte Carlo within 5 SE."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gan_strategies import F64, reference_jsd, specs
from hypothesis import given, settings
from torch.distributions import (
    Bernoulli,
    Categorical,
    Independent,
    MultivariateNormal,
    Normal,
    Uniform,
)

from probgen.gan import Estimate, jsd

LOG2 = math.log(2.0)


def t(*v):
    return torch.tensor(v if len(v) > 1 else v[0], dtype=F64)


@settings(max_examples=15)
@given(p=specs(), q=specs())
def test_quadrature_matches_scipy_reference(p, q):
    result = jsd(p.torch(), q.torch(), return_info=True)
    assert isinstance(result, Estimate) and result.method == "quadrature"
    assert result.value.item() == pytest.approx(reference_jsd(p, q), abs=1e-9)
    assert 0.0 <= result.value.item() <= LOG2


@settings(max_examples=10)
@given(p=specs(("normal", "laplace")), q=specs(("normal", "laplace")))
def test_symmetric(p, q):
    a, b = jsd(p.torch(), q.torch()), jsd(q.torch(), p.torch())
    assert a.item() == pytest.approx(b.item(), abs=1e-10)


def test_identical_is_zero_disjoint_is_log2():
    assert jsd(Normal(t(1.0), t(2.0)), Normal(t(1.0), t(2.0))).item() == pytest.approx(0, abs=1e-12)
    disjoint = jsd(Uniform(t(0.0), t(1.0)), Uniform(t(2.0), t(5.0)), return_info=True)
    assert disjoint.method == "exact" and disjoint.value.item() == pytest.approx(LOG2, rel=1e-15)


def test_uniform_closed_form_matches_quadrature():
    p, q = Uniform(t(0.0, -1.0), t(1.0, 0.5)), Uniform(t(0.5, -3.0), t(3.0, 0.0))
    exact = jsd(p, q, return_info=True)
    quad = jsd(p, q, method="quadrature", points=[-1.0, 0.0, 0.5, 1.0], return_info=True)
    assert exact.method == "exact" and quad.method == "quadrature"
    torch.testing.assert_close(exact.value, quad.value, rtol=0, atol=1e-8)


def test_finite_support_exact_sums():
    pb, qb = Bernoulli(t(0.2, 0.9)), Bernoulli(t(0.6, 0.9))
    a, b = np.array([0.2, 0.8]), np.array([0.6, 0.4])
    m = (a + b) / 2
    expected = 0.5 * np.sum(a * np.log(a / m)) + 0.5 * np.sum(b * np.log(b / m))
    result = jsd(pb, qb, return_info=True)
    assert result.method == "exact"
    assert result.value[0].item() == pytest.approx(expected, rel=1e-13)
    assert result.value[1].item() == pytest.approx(0.0, abs=1e-15)
    # One category carries no mass under p: its term is q's alone, never NaN.
    pc, qc = Categorical(t(0.5, 0.5, 0.0)), Categorical(t(0.2, 0.3, 0.5))
    a, b = np.array([0.5, 0.5]), np.array([0.2, 0.3])
    m = (a + b) / 2
    expected = 0.5 * np.sum(a * np.log(a / m)) + 0.5 * np.sum(b * np.log(b / m)) + 0.5 * 0.5 * LOG2
    assert jsd(pc, qc).item() == pytest.approx(expected, rel=1e-13)


def test_mc_within_five_standard_errors_of_quadrature():
    p = Normal(t(0.0), t(1.0))
    q = torch.distributions.Laplace(t(1.0), t(0.7))
    exact = jsd(p, q).item()
    mc = jsd(p, q, method="mc", num_samples=20_000, seed=3, return_info=True)
    assert mc.method == "mc" and mc.num_samples == 20_000
    assert abs(mc.value.item() - exact) < 5 * mc.stderr.item()


def test_mc_in_two_dimensions_reduces_to_one_dimension():
    # JSD(p1 ⊗ r ‖ q1 ⊗ r) = JSD(p1 ‖ q1): a 2-D Monte Carlo checked against 1-D quadrature.
    p2 = MultivariateNormal(t(0.0, 3.0), torch.diag(t(1.0, 4.0)))
    q2 = Independent(Normal(t(1.5, 3.0), t(0.5, 2.0)), 1)
    exact = jsd(Normal(t(0.0), t(1.0)), Normal(t(1.5), t(0.5))).item()
    mc = jsd(p2, q2, num_samples=20_000, seed=0, return_info=True)
    assert mc.method == "mc"
    assert abs(mc.value.item() - exact) < 5 * mc.stderr.item()


def test_mc_seed_reproducible_and_global_rng_untouched():
    p, q = Normal(t(0.0), t(1.0)), Normal(t(1.0), t(1.0))
    state = torch.get_rng_state()
    a = jsd(p, q, method="mc", seed=7, num_samples=100)
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(a, jsd(p, q, method="mc", seed=7, num_samples=100))


def test_mc_gradient_flows_through_samples():
    loc = t(0.5).requires_grad_()
    value = jsd(Normal(loc, t(1.0)), Normal(t(0.0), t(1.0)), method="mc", seed=0)
    (grad,) = torch.autograd.grad(value, loc)
    # d/dμ JSD > 0 for μ > 0 (the distributions move apart): checked against quadrature.
    h = 1e-4
    fd = (
        jsd(Normal(t(0.5 + h), t(1.0)), Normal(t(0.0), t(1.0)))
        - jsd(Normal(t(0.5 - h), t(1.0)), Normal(t(0.0), t(1.0)))
    ) / (2 * h)
    assert grad.item() == pytest.approx(fd.item(), rel=0.1)


def test_batched_quadrature():
    ps = Normal(t(0.0, 1.0, 2.0), t(1.0))
    q = Normal(t(0.5), t(2.0))
    batched = jsd(ps, q)
    assert batched.shape == (3,)
    for i, mu in enumerate((0.0, 1.0, 2.0)):
        single = jsd(Normal(t(mu), t(1.0)), q)
        assert batched[i].item() == pytest.approx(single.item(), abs=1e-10)


def test_bad_input():
    n = Normal(t(0.0), t(1.0))
    with pytest.raises(ValueError, match="method must be one of"):
        jsd(n, n, method="simpson")
    with pytest.raises(ValueError, match="event shapes differ"):
        jsd(n, MultivariateNormal(t(0.0, 0.0), torch.eye(2, dtype=F64)))
    with pytest.raises(ValueError, match="univariate continuous"):
        jsd(Bernoulli(t(0.5)), Bernoulli(t(0.2)), method="quadrature")
    with pytest.raises(NotImplementedError, match="p=Normal, q=Normal"):
        jsd(n, n, method="exact")
    with pytest.raises(ValueError, match="num_samples"):
        jsd(n, n, method="mc", num_samples=1)
    with pytest.raises(ValueError, match="scale"):
        jsd(Normal(t(0.0), t(-1.0), validate_args=False), n)


def test_equal_mixture_density_and_samples():
    from probgen.gan import EqualMixture

    p, q = Normal(t(-1.0), t(0.5)), Normal(t(2.0), t(1.0))
    m = EqualMixture(p, q)
    x = t(-1.0, 0.0, 2.5)
    expected = torch.log(0.5 * p.log_prob(x).exp() + 0.5 * q.log_prob(x).exp())
    torch.testing.assert_close(m.log_prob(x), expected)
    n = 20_000
    s = m.sample((n,))
    assert s.shape == (n,)
    mean, var = 0.5, 0.5 * (0.25 + 1.0) + 0.25 * 9.0  # mixture mean and variance
    assert abs(s.mean().item() - mean) < 5 * math.sqrt(var / n)


def test_support_of_a_wrapped_distribution_is_honoured():
    # LogNormal's base Normal sees log x = NaN for x < 0: the density there is 0, not an error.
    import scipy.integrate
    import scipy.stats

    p, q = Normal(t(0.0), t(1.0)), torch.distributions.LogNormal(t(0.0), t(1.0))

    def f(x: float) -> float:
        lp = scipy.stats.norm.logpdf(x)
        lq = scipy.stats.lognorm.logpdf(x, 1.0) if x > 0 else -np.inf
        lm = np.logaddexp(lp, lq) - np.log(2.0)
        return 0.5 * (np.exp(lp) * (lp - lm) + (np.exp(lq) * (lq - lm) if lq > -np.inf else 0.0))

    exact = scipy.integrate.quad(f, -np.inf, 0)[0] + scipy.integrate.quad(f, 0, np.inf)[0]
    quad = jsd(p, q, return_info=True)
    assert quad.method == "quadrature"
    assert abs(quad.value.item() - exact) <= 1e-8
    mc = jsd(p, q, method="mc", num_samples=20_000, seed=1, return_info=True)
    assert abs(mc.value.item() - exact) < 5 * mc.stderr.item()
