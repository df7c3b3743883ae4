"""Independent references: quadrature, exact sums, mpmath, Monte Carlo, support, no reference."""

from __future__ import annotations

import math

import mpmath
import pytest
import torch
import torch.distributions as td

from probgen.checks.references import reference_kl

f64 = torch.float64


def t(*v):
    return torch.tensor(v[0] if len(v) == 1 else v, dtype=f64)


def normal_kl(m1, s1, m2, s2):
    """KL(N(m1, s1²) ‖ N(m2, s2²)) in 50-digit arithmetic."""
    with mpmath.workdps(50):
        m1, s1, m2, s2 = map(mpmath.mpf, (m1, s1, m2, s2))
        r = (s1 / s2) ** 2
        return float((r + ((m1 - m2) / s2) ** 2 - 1 - mpmath.log(r)) / 2)


@pytest.mark.parametrize("params", [(0.0, 1.0, 1.0, 2.0), (1e3, 1e-3, 1e3, 1.001e-3), (0, 1, 0, 1)])
def test_quad_matches_normal_formula_within_its_stated_error(params):
    ref = reference_kl(td.Normal(t(params[0]), t(params[1])), td.Normal(t(params[2]), t(params[3])))
    assert ref.ok and ref.method.startswith("quad")
    exact = normal_kl(*params)
    assert abs(ref.value - exact) <= ref.error + 1e-15 * abs(exact)


def test_exact_sum_poisson_matches_formula():
    a, b = 3.0, 5.0
    ref = reference_kl(td.Poisson(t(a)), td.Poisson(t(b)))
    exact = a * math.log(a / b) - a + b
    assert ref.method == "exact sum" and "truncated" in ref.detail
    assert abs(ref.value - exact) <= ref.error + 1e-15


def test_exact_sum_adds_q_mass_outside_p_support():
    # KL(Bernoulli(π) ‖ Poisson(λ)) = Σ_{x∈{0,1}} p log p/q: q's mass beyond 1 enters only
    # through the e^ℓ−1−ℓ form's correction, so this checks that correction.
    pi, lam = 0.3, 0.5
    exact = (1 - pi) * math.log((1 - pi) / math.exp(-lam)) + pi * math.log(
        pi / (lam * math.exp(-lam))
    )
    ref = reference_kl(td.Bernoulli(t(pi)), td.Poisson(t(lam)))
    assert abs(ref.value - exact) <= ref.error + 1e-15


def test_support_mismatch_is_infinite():
    ref = reference_kl(td.Normal(t(0.0), t(1.0)), td.Beta(t(2.0), t(3.0)))
    assert ref.value == math.inf and ref.method == "support"
    ref = reference_kl(td.Binomial(10, t(0.3)), td.Binomial(5, t(0.3)))
    assert ref.value == math.inf


def test_gaussian_reference_is_mpmath_and_monte_carlo_covers_it():
    loc = t(0.0, 1.0)
    p = td.MultivariateNormal(loc, scale_tril=t([[1.0, 0.0], [0.5, 2.0]]))
    q = td.Independent(td.Normal(t(0.0, 0.0), t(1.0, 1.5)), 1)
    ref = reference_kl(p, q)
    assert ref.method == "mpmath closed form"
    from probgen.checks.references import _monte_carlo

    mc = _monte_carlo(p, q, 20_000, seed=0, z=5.0)
    assert abs(mc.value - ref.value) <= mc.error


def test_two_component_dirichlet_is_checked_as_beta():
    ref = reference_kl(td.Dirichlet(t(2.0, 3.0)), td.Beta(t(2.0), t(3.0)))
    assert ref.method.startswith("quad") and abs(ref.value) <= ref.error + 1e-14


def test_quantile_underflow_is_no_reference_not_a_value():
    # Beta(0.01, 0.01): most of the mass lies within 1e-300 of 0 and 1, where its quantile
    # rounds onto the support's ends; the quadrature cannot see it.
    ref = reference_kl(td.Beta(t(0.01), t(0.01)), td.ContinuousBernoulli(t(0.3)))
    assert not ref.ok and math.isnan(ref.value)
