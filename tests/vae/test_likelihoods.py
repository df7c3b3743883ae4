"""Likelihoods: log-densities against scipy, normalization, support checks, learned scales."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

from probgen.vae.likelihoods import LIKELIHOODS, get_likelihood

D = 5


def _logits(n: int = 4, width: int = D, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(n, width, generator=g, dtype=torch.float64)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def test_bernoulli_matches_scipy():
    out = _logits()
    x = (torch.rand(out.shape, dtype=torch.float64) > 0.5).double()
    ref = stats.bernoulli.logpmf(_np(x), special.expit(_np(out))).sum(-1)
    got = get_likelihood("bernoulli").reconstruction_loss(out, x)
    np.testing.assert_allclose(_np(got), -ref, rtol=1e-12)


def test_binomial_matches_scipy_and_is_normalized():
    lik = get_likelihood("binomial", total_count=16)
    out = _logits()
    x = torch.randint(0, 17, out.shape).double()
    ref = stats.binom.logpmf(_np(x), 16, special.expit(_np(out))).sum(-1)
    np.testing.assert_allclose(_np(lik.reconstruction_loss(out, x)), -ref, rtol=1e-10)
    # Σ_{k=0}^{16} p(k) = 1 for each pixel.
    k = torch.arange(17, dtype=torch.float64).reshape(17, 1, 1).expand(17, *out.shape)
    total = lik.distribution(out).base_dist.log_prob(k).exp().sum(0)
    np.testing.assert_allclose(_np(total), 1.0, rtol=1e-12)


def test_continuous_bernoulli_matches_formula_and_bce_is_not_normalized():
    lik = get_likelihood("continuous_bernoulli")
    out = torch.tensor([[1.5]], dtype=torch.float64)
    lam = special.expit(1.5)
    log_c = np.log(2 * np.arctanh(1 - 2 * lam) / (1 - 2 * lam))

    def density(x: float) -> float:
        return float(
            torch.exp(-lik.reconstruction_loss(out, torch.tensor([[x]], dtype=torch.float64)))
        )

    def bce_density(x: float) -> float:  # exp(−BCE): what "BCE on grey values" integrates
        return lam**x * (1 - lam) ** (1 - x)

    x = 0.3
    np.testing.assert_allclose(
        np.log(density(x)), log_c + x * np.log(lam) + (1 - x) * np.log1p(-lam), rtol=1e-10
    )
    assert integrate.quad(density, 0, 1)[0] == pytest.approx(1.0, abs=1e-8)
    # exp(−BCE) integrates to 1/C(λ) = (2λ − 1)/logit(λ) ≈ 0.42, not 1.
    assert integrate.quad(bce_density, 0, 1)[0] == pytest.approx(np.exp(-log_c), rel=1e-8)
    assert np.exp(-log_c) < 0.5


def test_gaussian_is_mse_scaled_plus_constant():
    sigma = 0.7
    lik = get_likelihood("gaussian", scale=sigma)
    out = _logits()
    x = _logits(seed=1)
    sse = (x - out).square().sum(-1)
    expected = sse / (2 * sigma**2) + D / 2 * np.log(2 * np.pi * sigma**2)
    np.testing.assert_allclose(_np(lik.reconstruction_loss(out, x)), _np(expected), rtol=1e-12)
    ref = stats.norm.logpdf(_np(x), _np(out), sigma).sum(-1)
    np.testing.assert_allclose(_np(lik.reconstruction_loss(out, x)), -ref, rtol=1e-12)


def test_laplace_matches_scipy():
    lik = get_likelihood("laplace", scale=0.4)
    out, x = _logits(), _logits(seed=2)
    ref = stats.laplace.logpdf(_np(x), _np(out), 0.4).sum(-1)
    np.testing.assert_allclose(_np(lik.reconstruction_loss(out, x)), -ref, rtol=1e-12)


def test_categorical_matches_log_softmax():
    lik = get_likelihood("categorical", num_levels=17)
    assert lik.num_params(D) == D * 17
    out = _logits(width=D * 17)
    x = torch.randint(0, 17, (4, D)).double()
    logits = _np(out).reshape(4, D, 17)
    logp = logits - special.logsumexp(logits, axis=-1, keepdims=True)
    ref = np.take_along_axis(logp, _np(x).astype(int)[..., None], -1)[..., 0].sum(-1)
    np.testing.assert_allclose(_np(lik.reconstruction_loss(out, x)), -ref, rtol=1e-12)


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_distribution_shapes(name):
    lik = get_likelihood(name)
    lik.setup(D)
    out = torch.zeros(3, 4, lik.num_params(D))
    d = lik.distribution(out)
    assert d.batch_shape == (3, 4)
    assert d.event_shape == (D,)


@pytest.mark.parametrize(
    ("name", "kwargs", "bad"),
    [
        ("bernoulli", {}, 0.5),
        ("bernoulli", {"allow_fractional": True}, 1.5),
        ("binomial", {"total_count": 16}, 17.0),
        ("binomial", {"total_count": 16}, 2.5),
        ("continuous_bernoulli", {}, -0.1),
        ("gaussian", {}, float("inf")),
        ("laplace", {}, float("nan")),
        ("categorical", {"num_levels": 17}, 17.0),
    ],
)
def test_support_check_names_value_and_row(name, kwargs, bad):
    lik = get_likelihood(name, **kwargs)
    x = torch.zeros(4, D)
    lik.check_support(x)  # valid data passes
    x[2, 3] = bad
    with pytest.raises(ValueError, match=r"x\[2, 3\] = .*row 2.*outside the support"):
        lik.check_support(x)


def test_fractional_bernoulli_accepts_grey_values():
    lik = get_likelihood("bernoulli", allow_fractional=True)
    x = torch.full((2, D), 0.25, dtype=torch.float64)
    lik.check_support(x)
    out = _logits(2)
    p = torch.sigmoid(out)
    bce = -(x * p.log() + (1 - x) * (1 - p).log()).sum(-1)
    torch.testing.assert_close(lik.reconstruction_loss(out, x), bce, rtol=1e-10, atol=0)


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown likelihood 'poisson'.*binomial"):
        get_likelihood("poisson")


@pytest.mark.parametrize(
    ("name", "kwargs", "param"),
    [
        ("binomial", {"total_count": 0}, "total_count"),
        ("categorical", {"num_levels": 1}, "num_levels"),
        ("gaussian", {"scale": -1.0}, "scale"),
        ("gaussian", {"learn": "everywhere"}, "learn"),
    ],
)
def test_bad_arguments(name, kwargs, param):
    with pytest.raises(ValueError, match=param):
        get_likelihood(name, **kwargs)


@pytest.mark.parametrize(("learn", "shape"), [("per_pixel", (D,)), ("shared", ())])
def test_learned_scale_has_gradient(learn, shape):
    lik = get_likelihood("gaussian_learned", scale=0.5, learn=learn)
    lik.setup(D)
    assert lik.scale.shape == shape
    torch.testing.assert_close(lik.scale, torch.full(shape, 0.5))
    lik.reconstruction_loss(torch.zeros(2, D), torch.ones(2, D)).sum().backward()
    (param,) = list(lik.parameters())
    assert param.grad is not None and bool((param.grad != 0).all())
