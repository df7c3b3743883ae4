"""D* and the identity V(D*, G) = −log 4 + 2·JSD, against independent scipy quadrature."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gan_strategies import F64, reference_jsd, reference_value, specs
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Independent, Normal, Uniform

from probgen.gan import (
    LOG_4,
    expected_value,
    jsd,
    optimal_discriminator,
    optimal_logit,
    optimal_value,
)


def t(*v):
    return torch.tensor(v if len(v) > 1 else v[0], dtype=F64)


@settings(max_examples=10)
@given(p=specs(), q=specs())
def test_identity_against_scipy_quadrature(p, q):
    """V(D*, G) computed as an expectation of log D* equals −log 4 + 2·JSD (scipy reference)."""
    p_data, p_g = p.torch(), q.torch()
    v_star = expected_value(lambda x: optimal_logit(p_data, p_g, x), p_data, p_g)
    assert v_star.method == "quadrature"
    expected = -LOG_4 + 2.0 * reference_jsd(p, q)
    assert v_star.value.item() == pytest.approx(expected, abs=1e-8)
    assert optimal_value(p_data, p_g).value.item() == pytest.approx(expected, abs=1e-8)
    assert -LOG_4 - 1e-12 <= v_star.value.item() <= 1e-12


perturbations = st.one_of(
    st.tuples(st.just("constant"), st.floats(0.05, 3.0) | st.floats(-3.0, -0.05), st.just(0.0)),
    st.tuples(st.just("sine"), st.floats(-3.0, 3.0), st.floats(0.1, 5.0)),
    st.tuples(st.just("linear"), st.floats(-2.0, 2.0), st.floats(-2.0, 2.0)),
)


def _perturbation(kind: str, a: float, b: float):
    if kind == "constant":
        return lambda x: a + 0.0 * x, lambda x: a
    if kind == "sine":
        return lambda x: a * torch.sin(b * x), lambda x: a * math.sin(b * x)
    return lambda x: a + b * torch.tanh(x), lambda x: a + b * math.tanh(x)


@settings(max_examples=10)
@given(p=specs(), q=specs(), perturbation=perturbations)
def test_optimal_discriminator_maximizes_value(p, q, perturbation):
    """V(D*, G) ≥ V(D, G) for D = D* with a perturbed logit, all by quadrature (no noise)."""
    p_data, p_g = p.torch(), q.torch()
    delta_t, delta_f = _perturbation(*perturbation)
    v_star = expected_value(lambda x: optimal_logit(p_data, p_g, x), p_data, p_g)
    v_other = expected_value(lambda x: optimal_logit(p_data, p_g, x) + delta_t(x), p_data, p_g)

    def star_logit(x: float) -> float:
        return float(p.logpdf(x) - q.logpdf(x))

    reference = reference_value(lambda x: star_logit(x) + delta_f(x), p, q)
    assert v_other.value.item() == pytest.approx(reference, abs=1e-8)
    tolerance = v_star.abserr + v_other.abserr
    assert v_star.value.item() >= v_other.value.item() - tolerance
    if perturbation[0] == "constant":  # a gap of order a²·E[D*(1 − D*)], far above tolerance
        assert v_star.value.item() > v_other.value.item() + 1e3 * tolerance


def test_optimal_logit_stable_in_far_tails():
    p, q = Normal(t(0.0), t(1.0)), Normal(t(1.0), t(1.0))
    x = t(-1e3, -40.0, 0.0, 40.0, 1e3)
    # log N(x; 0, 1) − log N(x; 1, 1) = −x + ½ exactly.
    torch.testing.assert_close(optimal_logit(p, q, x), -x + 0.5, rtol=1e-12, atol=1e-9)
    d = optimal_discriminator(p, q, x)
    assert torch.isfinite(d).all() and d[0].item() == 1.0 and d[-1].item() == 0.0
    # Where the densities do not underflow, D* is p / (p + q) directly.
    xs = t(-2.0, 0.3, 1.7)
    direct = p.log_prob(xs).exp() / (p.log_prob(xs).exp() + q.log_prob(xs).exp())
    torch.testing.assert_close(optimal_discriminator(p, q, xs), direct)


def test_disjoint_supports_value_zero():
    p, q = Uniform(t(0.0), t(1.0)), Uniform(t(2.0), t(3.0))
    x = t(0.5, 1.5, 2.5)
    logit = optimal_logit(p, q, x)
    assert logit[0].item() == math.inf and logit[1].item() == 0.0 and logit[2].item() == -math.inf
    v = expected_value(lambda x: optimal_logit(p, q, x), p, q, points=[1.0, 2.0])
    assert v.value.item() == pytest.approx(0.0, abs=1e-12)
    assert optimal_value(p, q).value.item() == pytest.approx(0.0, abs=1e-12)


def test_equal_distributions_value_minus_log4():
    p = Normal(t(0.3), t(2.0))
    v = expected_value(lambda x: optimal_logit(p, p, x), p, p)
    assert v.value.item() == pytest.approx(-LOG_4, abs=1e-10)


def test_mc_value_within_five_standard_errors():
    p, q = Normal(t(0.0), t(1.0)), Normal(t(2.0), t(0.5))
    logit = lambda x: 1.0 - 0.8 * x  # noqa: E731  (some discriminator, not the optimal one)
    exact = expected_value(logit, p, q)
    mc = expected_value(logit, p, q, method="mc", num_samples=20_000, seed=4)
    assert mc.method == "mc" and exact.method == "quadrature"
    assert abs(mc.value.item() - exact.value.item()) < 5 * mc.stderr.item()


def test_mc_identity_in_two_dimensions():
    # 2-D, no quadrature: V(D*, G) by MC agrees with −log 4 + 2·JSD by MC (both with SE).
    p = Independent(Normal(t(0.0, 0.0), t(1.0, 1.0)), 1)
    q = Independent(Normal(t(1.0, -0.5), t(0.7, 1.5)), 1)
    v = expected_value(lambda x: optimal_logit(p, q, x), p, q, num_samples=20_000, seed=1)
    opt = optimal_value(p, q, num_samples=20_000, seed=2)
    assert v.method == "mc" and opt.method == "mc"
    se = np.hypot(v.stderr.item(), opt.stderr.item())
    assert abs(v.value.item() - opt.value.item()) < 5 * se
    assert jsd(p, q, seed=0).item() > 0


def test_bad_input():
    p = Normal(t(0.0), t(1.0))
    with pytest.raises(ValueError, match="method must be one of"):
        expected_value(lambda x: x, p, p, method="trapezoid")
    with pytest.raises(ValueError, match="univariate continuous"):
        q = Independent(Normal(t(0.0, 0.0), t(1.0, 1.0)), 1)
        expected_value(lambda x: x.sum(-1), q, q, method="quadrature")
    with pytest.raises(ValueError, match="num_samples"):
        expected_value(lambda x: x, p, p, method="mc", num_samples=1)


@pytest.mark.parametrize("method", ["quadrature", "mc"])
def test_expected_value_refuses_a_nan_logit(method):
    p_data, p_g = Normal(0.0, 1.0), Normal(1.0, 1.0)

    def logit_fn(x):
        return torch.where(x > 0.5, torch.nan, x)

    with pytest.raises(ValueError, match="logit_fn returned NaN at"):
        expected_value(logit_fn, p_data, p_g, method=method, num_samples=100, seed=0)
