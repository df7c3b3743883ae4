"""probgen.kl_divergence: method choice, visibility of the method, validation, shapes."""

import math
import warnings

import pytest
import torch
from torch.distributions import (
    Categorical,
    Dirichlet,
    MixtureSameFamily,
    Normal,
    OneHotCategorical,
)

import probgen
from probgen import KLMethodWarning, KLResult


def _mixture():
    return MixtureSameFamily(
        Categorical(torch.tensor([0.3, 0.7])), Normal(torch.tensor([-1.0, 2.0]), 1.0)
    )


def test_analytic_normal_matches_textbook_formula():
    p, q = Normal(0.3, 1.5), Normal(-0.2, 0.7)
    expected = math.log(0.7 / 1.5) + (1.5**2 + 0.5**2) / (2 * 0.7**2) - 0.5
    result = probgen.kl_divergence(p, q, method="analytic", return_info=True)
    assert isinstance(result, KLResult)
    assert result.method == "analytic" and result.stderr is None
    assert result.value.item() == pytest.approx(expected, rel=1e-6)


def test_analytic_without_closed_form_names_both_types():
    with pytest.raises(NotImplementedError, match="p=MixtureSameFamily, q=Normal"):
        probgen.kl_divergence(_mixture(), Normal(0.0, 1.0), method="analytic")


def test_auto_falls_back_to_mc_visibly():
    p, q = _mixture(), Normal(0.0, 2.0)
    with pytest.warns(KLMethodWarning, match="Monte Carlo"):
        value = probgen.kl_divergence(p, q, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        info = probgen.kl_divergence(p, q, seed=0, return_info=True)
        explicit = probgen.kl_divergence(p, q, method="mc", seed=0)
    assert info.method == "mc" and info.num_samples == 1000 and info.stderr is not None
    assert torch.equal(value, info.value) and torch.equal(explicit, info.value)


def test_auto_uses_closed_form_when_registered():
    info = probgen.kl_divergence(Normal(0.0, 1.0), Normal(1.0, 2.0), return_info=True)
    assert info.method == "analytic"


def test_result_has_broadcast_batch_shape():
    p = Normal(torch.zeros(3), torch.ones(3))
    q = Normal(torch.zeros(2, 1), torch.ones(2, 1))
    assert probgen.kl_divergence(p, q).shape == (2, 3)
    assert probgen.kl_divergence(p, q, method="mc", num_samples=10, seed=0).shape == (2, 3)


@pytest.mark.parametrize(
    ("p", "match"),
    [
        (Normal(0.0, -1.0, validate_args=False), r"p: parameter 'scale' of Normal must satisfy"),
        (Normal(float("nan"), 1.0, validate_args=False), r"p: parameter 'loc' of Normal is NaN"),
        (
            Categorical(probs=torch.tensor([0.5, -0.5]), validate_args=False),
            r"p: parameter 'probs' of Categorical",
        ),
    ],
)
def test_invalid_parameters_raise_value_error(p, match):
    q = Normal(0.0, 1.0) if isinstance(p, Normal) else Categorical(torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match=match):
        probgen.kl_divergence(p, q)


def test_bad_value_is_named():
    p = Normal(torch.tensor([1.0, 2.0]), torch.tensor([1.0, -3.0]), validate_args=False)
    with pytest.raises(ValueError, match=r"-3\.0 at index \(1,\)"):
        probgen.kl_divergence(p, Normal(0.0, 1.0))


def test_event_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"event shapes differ.*\(1,\).*\(3,\)"):
        probgen.kl_divergence(Dirichlet(torch.ones(1)), Dirichlet(torch.ones(3)))
    with pytest.raises(ValueError, match="event shapes differ"):
        probgen.kl_divergence(OneHotCategorical(torch.ones(2)), OneHotCategorical(torch.ones(3)))


def test_batch_shapes_that_do_not_broadcast_raise():
    p = Normal(torch.zeros(3), 1.0)
    q = Normal(torch.zeros(4), 1.0)
    with pytest.raises(ValueError, match=r"batch shapes do not broadcast.*\(3,\).*\(4,\)"):
        probgen.kl_divergence(p, q)


def test_unknown_method_lists_valid_ones():
    with pytest.raises(ValueError, match="method must be one of"):
        probgen.kl_divergence(Normal(0.0, 1.0), Normal(0.0, 1.0), method="exact")


def test_categorical_and_one_hot_are_the_same_law():
    logits = torch.tensor([[0.1, -2.0, 3.0], [1.0, 1.0, 1.0]])
    p, q = Categorical(logits=logits), OneHotCategorical(logits=logits.flip(-1))
    assert torch.allclose(
        probgen.kl_divergence(p, q),
        probgen.kl_divergence(Categorical(logits=logits), Categorical(logits=logits.flip(-1))),
    )
    assert probgen.kl_divergence(q, p).shape == (2,)


def test_different_numbers_of_categories_raise():
    with pytest.raises(ValueError, match=r"numbers of categories differ.*3.*4"):
        probgen.kl_divergence(Categorical(torch.ones(3)), OneHotCategorical(torch.ones(4)))
    with pytest.raises(ValueError, match=r"numbers of categories differ.*3.*4"):
        probgen.kl_divergence(Categorical(torch.ones(3)), Categorical(torch.ones(4)))


def test_beta_and_two_component_dirichlet():
    from torch.distributions import Beta

    a, b = torch.tensor(2.0, dtype=torch.float64), torch.tensor(3.0, dtype=torch.float64)
    beta, dirichlet = Beta(a, b), Dirichlet(torch.stack([a + 1, b]))
    expected = probgen.kl_divergence(beta, Beta(a + 1, b))
    assert torch.allclose(probgen.kl_divergence(beta, dirichlet), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="event shapes differ"):
        probgen.kl_divergence(beta, Dirichlet(torch.ones(3)))


def _mvn(d, batch=2):
    from torch.distributions import MultivariateNormal

    a = torch.randn(batch, d, d, dtype=torch.float64) / d**0.5
    cov = a @ a.mT + torch.eye(d, dtype=torch.float64)
    return MultivariateNormal(torch.randn(batch, d, dtype=torch.float64), cov)


def test_prefer_speed_uses_mc_only_where_measured_cheaper():
    p, q = _mvn(64), _mvn(64)
    fast = probgen.kl_divergence(p, q, prefer="speed", num_samples=2, seed=0, return_info=True)
    assert fast.method == "mc" and fast.num_samples == 2
    many = probgen.kl_divergence(p, q, prefer="speed", num_samples=100, return_info=True)
    small = probgen.kl_divergence(
        _mvn(32), _mvn(32), prefer="speed", num_samples=2, return_info=True
    )
    default = probgen.kl_divergence(p, q, num_samples=2, return_info=True)
    assert many.method == small.method == default.method == "analytic"


def test_unknown_preference_is_named():
    with pytest.raises(ValueError, match="prefer must be 'accuracy' or 'speed', got 'cheap'"):
        probgen.kl_divergence(Normal(0.0, 1.0), Normal(0.0, 1.0), prefer="cheap")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"estimator": "k2"}, r"estimator must be one of.*'k2'"),
        ({"num_samples": 0}, r"num_samples must be an integer ≥ 2, got 0"),
    ],
)
def test_monte_carlo_arguments_are_checked_even_with_a_closed_form(kwargs, match):
    # A typo must not wait for the first pair without a closed form to surface.
    with pytest.raises(ValueError, match=match):
        probgen.kl_divergence(Normal(0.0, 1.0), Normal(1.0, 1.0), **kwargs)


def test_nan_without_validation_names_the_bad_parameter():
    p = Normal(0.0, -1.0, validate_args=False)
    with pytest.raises(ValueError, match=r"p: parameter 'scale' of Normal.*-1\.0"):
        probgen.kl_divergence(p, Normal(0.0, 1.0), validate=False)


def test_a_non_distribution_is_a_type_error():
    with pytest.raises(
        TypeError, match=r"p must be a torch\.distributions\.Distribution, got float"
    ):
        probgen.kl_divergence(1.0, Normal(0.0, 1.0))


def test_dependent_constraints_are_skipped_not_an_error():
    # Pyro's Delta constrains v by a dependent constraint, which cannot be checked.
    import pyro.distributions as dist

    delta = dist.Delta(torch.tensor(2.0, dtype=torch.float64))
    q = dist.Poisson(torch.tensor(3.0, dtype=torch.float64))
    expected = q.log_prob(torch.tensor(2.0, dtype=torch.float64)).neg()
    assert torch.allclose(probgen.kl_divergence(delta, q), expected, rtol=1e-12)
    with pytest.raises(ValueError, match=r"p: parameter 'v' of Delta is NaN"):
        probgen.kl_divergence(dist.Delta(torch.tensor(math.nan)), Normal(0.0, 1.0))


def test_event_constraint_violation_shows_the_bad_value():
    from torch.distributions import LowRankMultivariateNormal, MultivariateNormal

    mvn = MultivariateNormal(torch.zeros(2), torch.eye(2))
    # Elementwise inside an independent constraint: the element itself, not its row's first.
    low_rank = LowRankMultivariateNormal(
        torch.zeros(2), torch.ones(2, 1), torch.tensor([1.0, -1.0]), validate_args=False
    )
    with pytest.raises(ValueError, match=r"'cov_diag'.*found -1\.0 at index \(1,\)"):
        probgen.kl_divergence(low_rank, mvn)
    # A matrix constraint: the whole offending matrix.
    tril = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    bad = MultivariateNormal(torch.zeros(2), scale_tril=tril, validate_args=False)
    with pytest.raises(ValueError, match=r"'scale_tril'.*\[\[1\.0, 0\.0\], \[0\.0, -1\.0\]\]"):
        probgen.kl_divergence(bad, mvn)


def test_mixture_components_are_validated():
    bad = Normal(torch.zeros(2), torch.tensor([1.0, -1.0]), validate_args=False)
    p = MixtureSameFamily(Categorical(torch.ones(2)), bad)
    with pytest.raises(ValueError, match=r"p: parameter 'scale' of Normal.*-1\.0 at index \(1,\)"):
        probgen.kl_divergence(p, Normal(0.0, 1.0), method="mc", seed=0)


def test_nan_from_an_infinite_parameter_names_it():
    # inf passes the 'real' constraint, but KL(N(inf, 1) ‖ N(inf, 1)) is undefined.
    inf = torch.tensor(math.inf)
    p, q = Normal(inf, 1.0, validate_args=False), Normal(inf, 1.0, validate_args=False)
    with pytest.raises(ValueError, match=r"p: parameter 'loc' of Normal is inf at index \(\)"):
        probgen.kl_divergence(p, q)


def test_prefer_speed_keeps_the_closed_form_off_the_cpu():
    """The MVN crossover was measured on the CPU; on a GPU the closed form was cheaper at every
    dimension (docs/benchmarks/gpu/kl_analytic_vs_mc.md)."""
    from torch.distributions import MultivariateNormal

    from probgen.kl.policy import mc_is_cheaper

    def mvn(device):
        eye = torch.eye(64, device=device)
        return MultivariateNormal(
            torch.zeros(64, device=device), scale_tril=eye, validate_args=False
        )

    assert mc_is_cheaper(mvn("cpu"), mvn("cpu"), 2)
    assert not mc_is_cheaper(mvn("meta"), mvn("meta"), 2)
