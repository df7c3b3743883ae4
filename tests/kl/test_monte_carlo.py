"""Monte Carlo KL estimators: unbiasedness, standard errors, gradients, reproducibility."""

import math

import pytest
import torch
from torch.distributions import (
    Beta,
    Exponential,
    Kumaraswamy,
    LogNormal,
    Normal,
    Poisson,
    Uniform,
)

import probgen
from probgen import mc_kl

F64 = torch.float64


def _normals():
    # q wider than p by less than √2, so the k3 estimator has finite variance.
    p = Normal(torch.tensor(0.3, dtype=F64), torch.tensor(1.0, dtype=F64))
    q = Normal(torch.tensor(-0.2, dtype=F64), torch.tensor(1.2, dtype=F64))
    return p, q


@pytest.mark.parametrize("estimator", ["naive", "k3"])
def test_estimate_within_five_standard_errors(estimator):
    p, q = _normals()
    exact = probgen.kl_divergence(p, q, method="analytic")
    result = mc_kl(p, q, num_samples=20_000, estimator=estimator, seed=1)
    assert result.gradient == "reparameterized"
    assert abs(result.value - exact) <= 5 * result.stderr


def test_k3_has_lower_variance_close_to_the_reference():
    # Near p, log r ≈ ε is first order while r − 1 − log r ≈ ε²/2 is second order.
    p = Normal(torch.tensor(0.0, dtype=F64), torch.tensor(1.0, dtype=F64))
    q = Normal(torch.tensor(0.05, dtype=F64), torch.tensor(1.02, dtype=F64))
    naive = mc_kl(p, q, num_samples=20_000, estimator="naive", seed=1)
    k3 = mc_kl(p, q, num_samples=20_000, estimator="k3", seed=1)
    assert k3.stderr < naive.stderr


def test_k3_terms_are_nonnegative():
    p, q = _normals()
    # With two samples per batch element (the least mc_kl takes), each of the 1000 estimates is
    # the mean of two terms, so ≥ 0 whenever every term is.
    pb = Normal(p.loc.expand(1000), p.scale.expand(1000))
    terms = mc_kl(pb, q, num_samples=2, estimator="k3", seed=3).value
    assert (terms >= 0).all()


def test_seed_is_reproducible_and_leaves_global_rng_alone():
    p, q = _normals()
    state = torch.get_rng_state()
    a = mc_kl(p, q, num_samples=100, seed=7).value
    assert torch.equal(torch.get_rng_state(), state)
    b = mc_kl(p, q, num_samples=100, seed=7).value
    c = mc_kl(p, q, num_samples=100, seed=8).value
    assert a == b and a != c


def test_generator_is_reproducible_and_advances():
    p, q = _normals()
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    first = mc_kl(p, q, num_samples=100, generator=g1).value
    assert first == mc_kl(p, q, num_samples=100, generator=g2).value
    assert first != mc_kl(p, q, num_samples=100, generator=g1).value


def test_reparameterized_gradient_is_unbiased():
    loc = torch.tensor(0.3, dtype=F64, requires_grad=True)
    q = Normal(torch.tensor(0.0, dtype=F64), torch.tensor(1.0, dtype=F64))
    grads = []
    for seed in range(20):
        value = mc_kl(Normal(loc, torch.tensor(1.0, dtype=F64)), q, 500, seed=seed).value
        grads.append(torch.autograd.grad(value, loc)[0])
    g = torch.stack(grads)
    # d/dμ KL(N(μ,1) ‖ N(0,1)) = μ.
    assert abs(g.mean() - 0.3) <= 5 * g.std() / math.sqrt(len(g))


@pytest.mark.parametrize("estimator", ["naive", "k3"])
def test_score_function_gradient_is_unbiased(estimator):
    # Poisson has no rsample: the gradient goes through the score-function surrogate.
    rate = torch.tensor(3.0, dtype=F64, requires_grad=True)
    q = Poisson(torch.tensor(2.0, dtype=F64))
    grads, values = [], []
    for seed in range(30):
        result = mc_kl(Poisson(rate), q, 2000, estimator=estimator, seed=seed)
        assert result.gradient == "score_function"
        grads.append(torch.autograd.grad(result.value, rate)[0])
        values.append(result.value.detach())
    g = torch.stack(grads)
    # KL = λp log(λp/λq) − λp + λq, d/dλp = log(λp/λq).
    assert abs(g.mean() - math.log(1.5)) <= 5 * g.std() / math.sqrt(len(g))
    exact = 3 * math.log(1.5) - 1
    v = torch.stack(values)
    assert abs(v.mean() - exact) <= 5 * v.std() / math.sqrt(len(v))


def test_support_mismatch_gives_infinity():
    p = Uniform(torch.tensor(0.0), torch.tensor(2.0))
    q = Uniform(torch.tensor(0.0), torch.tensor(1.0))
    for estimator in ("naive", "k3"):
        assert mc_kl(p, q, 100, estimator=estimator, seed=0).value.item() == math.inf
    # Exponential's support is [0, ∞): samples of a Normal below 0 make the KL infinite.
    assert mc_kl(Normal(0.0, 1.0), Exponential(1.0), 100, seed=0).value.item() == math.inf
    # A LogNormal's base Normal would see log(x) = NaN for x < 0: still +inf, no error.
    assert mc_kl(Normal(0.0, 1.0), LogNormal(0.0, 1.0), 100, seed=0).value.item() == math.inf


@pytest.mark.parametrize("bad", [1, 0, 2.5, True])
def test_num_samples_must_be_an_integer_at_least_two(bad):
    p, q = _normals()
    with pytest.raises(ValueError, match="num_samples must be an integer ≥ 2"):
        mc_kl(p, q, num_samples=bad)


def test_unknown_estimator_is_named():
    p, q = _normals()
    with pytest.raises(ValueError, match=r"estimator must be one of.*'k2'"):
        mc_kl(p, q, estimator="k2")


def test_nan_log_density_at_a_sample_raises():
    # Kumaraswamy's float32 rsample can round onto x = 1, where its log-density is NaN.
    torch.manual_seed(0)
    a, b = torch.empty(256).uniform_(0.5, 3), torch.empty(256).uniform_(0.5, 3)
    p, q = Kumaraswamy(a, b), Beta(b, a)
    with pytest.raises(FloatingPointError, match=r"NaN at \d+ of 256000 sampled points.*float64"):
        mc_kl(p, q, 1000, seed=0)
    p64, q64 = Kumaraswamy(a.double(), b.double()), Beta(b.double(), a.double())
    assert torch.isfinite(mc_kl(p64, q64, 1000, seed=0).value).all()


def _same_law_pairs():
    from torch.distributions import Beta, Categorical, Dirichlet, OneHotCategorical

    probs_p = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]], dtype=F64)
    probs_q = torch.tensor([0.1, 0.3, 0.6], dtype=F64)
    a, b = torch.tensor([2.0, 0.7], dtype=F64), torch.tensor([3.0, 1.5], dtype=F64)
    conc = torch.tensor([4.0, 1.2], dtype=F64)
    return [
        (Categorical(probs_p), OneHotCategorical(probs_q)),
        (OneHotCategorical(probs_p), Categorical(probs_q)),
        (Beta(a, b), Dirichlet(conc)),
        (Dirichlet(torch.stack([a, b], -1)), Beta(conc[0], conc[1])),
    ]


@pytest.mark.parametrize("pair", _same_law_pairs(), ids=lambda pq: type(pq[0]).__name__)
def test_same_law_in_another_event_space_matches_the_closed_form(pair):
    # Categorical ↔ OneHotCategorical and Beta ↔ 2-component Dirichlet have different event
    # shapes but one law: the samples of p must be read in q's event space.
    p, q = pair
    exact = probgen.kl_divergence(p, q, method="analytic")
    result = mc_kl(p, q, num_samples=20_000, seed=4)
    assert result.value.shape == exact.shape
    assert (abs(result.value - exact) <= 5 * result.stderr).all()


@pytest.mark.parametrize(
    ("p", "q", "match"),
    [
        (Normal(0.0, -1.0, validate_args=False), Normal(0.0, 1.0), r"'scale'.*-1\.0"),
        (Normal(float("nan"), 1.0, validate_args=False), Normal(0.0, 1.0), r"'loc'.*NaN"),
        (Normal(torch.zeros(3), 1.0), Normal(torch.zeros(4), 1.0), r"\(3,\).*\(4,\)"),
    ],
)
def test_invalid_input_raises_value_error(p, q, match):
    with pytest.raises(ValueError, match=match):
        mc_kl(p, q, 10, seed=0)


def test_event_shape_mismatch_is_named():
    from torch.distributions import MultivariateNormal

    p = MultivariateNormal(torch.zeros(2), torch.eye(2))
    q = MultivariateNormal(torch.zeros(3), torch.eye(3))
    with pytest.raises(ValueError, match=r"event shapes differ.*\(2,\).*\(3,\)"):
        mc_kl(p, q, 10, seed=0)


def test_infinite_kl_has_zero_standard_error():
    # One sample outside q's support proves KL = +inf: no NaN standard error.
    p = Uniform(torch.tensor([0.0, 0.0]), torch.tensor([2.0, 0.5]))
    q = Uniform(torch.tensor(0.0), torch.tensor(1.0))
    for estimator in ("naive", "k3"):
        result = mc_kl(p, q, 100, estimator=estimator, seed=0)
        assert result.value[0].item() == math.inf and result.stderr[0].item() == 0
        assert math.isfinite(result.stderr[1].item()) and result.value[1].item() < math.inf


def test_seed_and_generator_together_are_refused():
    p, q = _normals()
    with pytest.raises(ValueError, match="seed or generator, not both"):
        mc_kl(p, q, 10, seed=1, generator=torch.Generator().manual_seed(0))
