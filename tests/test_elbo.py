"""elbo_terms against Pyro's ELBO classes (same samples), KL methods per site, IWAE."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from probgen.elbo import elbo_terms, iwae_bound, kl_fallback_sites
from probgen.kl import lookup
from probgen.vae import VAE

N, D, L = 5, 8, 2


@pytest.fixture
def vae() -> VAE:
    pyro.clear_param_store()
    return VAE(D, L, hidden=(6,), free_bits=0.3).double()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randint(0, 17, (N, D), generator=torch.Generator().manual_seed(2)).double()


def _f(value) -> float:
    return float(value.detach()) if torch.is_tensor(value) else float(value)


@pytest.mark.parametrize("num_particles", [1, 3])
@pytest.mark.parametrize(
    ("method", "elbo_class"), [("analytic", TraceMeanField_ELBO), ("mc", Trace_ELBO)]
)
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_total_equals_pyro_loss(vae, x, method, elbo_class, num_particles, beta):
    pyro.set_rng_seed(7)
    loss = _f(elbo_class(num_particles=num_particles).loss(vae.model, vae.guide, x, kl_weight=beta))
    pyro.set_rng_seed(7)
    terms = elbo_terms(
        vae.model, vae.guide, x, kl_weight=beta, method=method, num_particles=num_particles
    )
    assert _f(terms.loss) == pytest.approx(loss, rel=1e-13)
    assert terms.kl_method == {"z": method}
    assert set(terms.recon) == {"x"} and set(terms.factors) == {"free_bits"}
    elbo = terms.recon_total - terms.kl_total + terms.factor_total
    assert _f(elbo) == _f(terms.elbo)


def test_terms_are_differentiable_and_match_differentiable_loss(vae, x):
    pyro.set_rng_seed(1)
    ref = TraceMeanField_ELBO().differentiable_loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(1)
    terms = elbo_terms(vae.model, vae.guide, x)
    params = list(vae.parameters())
    for a, b in zip(
        torch.autograd.grad(ref, params), torch.autograd.grad(terms.loss, params), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def _mixed_model(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("w", dist.Normal(x.new_zeros(x.shape[0]), 1.0))
        z = pyro.sample("z", dist.SoftLaplace(x.new_zeros(x.shape[0]), 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def _mixed_guide(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("w", dist.Normal(0.3 * x, 0.8))
        pyro.sample("z", dist.Normal(0.5 * x, 0.7))


def test_fallback_is_reported_and_matches_trace_mean_field():
    x = torch.linspace(-1, 1, 4, dtype=torch.float64)
    assert lookup(dist.Normal(0.0, 1.0), dist.SoftLaplace(0.0, 1.0)) is None  # precondition
    pyro.set_rng_seed(0)
    loss = _f(TraceMeanField_ELBO().loss(_mixed_model, _mixed_guide, x))
    pyro.set_rng_seed(0)
    terms = elbo_terms(_mixed_model, _mixed_guide, x, method="analytic")
    assert terms.kl_method == {"w": "analytic", "z": "mc"}
    assert _f(terms.loss) == pytest.approx(loss, rel=1e-13)
    assert kl_fallback_sites(_mixed_model, _mixed_guide, x) == {"z": ("Normal", "SoftLaplace")}


def test_sampled_kl_agrees_with_closed_form_within_its_standard_error(vae, x):
    with torch.no_grad():
        pyro.set_rng_seed(3)
        mc = elbo_terms(vae.model, vae.guide, x, method="mc", num_particles=400)
        exact = elbo_terms(vae.model, vae.guide, x, method="analytic")
    se = mc.kl_stderr["z"]
    assert exact.kl_stderr["z"] is None
    assert se is not None and float(se) > 0
    assert abs(float(mc.kl["z"] - exact.kl["z"])) <= 5 * float(se)


def test_bad_arguments(vae, x):
    with pytest.raises(ValueError, match="method"):
        elbo_terms(vae.model, vae.guide, x, method="exact")
    with pytest.raises(ValueError, match="num_particles"):
        elbo_terms(vae.model, vae.guide, x, num_particles=0)
    with pytest.raises(ValueError, match="num_samples"):
        iwae_bound(vae.model, vae.guide, x, num_samples=0)
    with (
        pytest.warns(UserWarning, match="in model but not guide"),  # Pyro's own check
        pytest.raises(ValueError, match="'z' of the model is not sampled by the guide"),
    ):
        elbo_terms(vae.model, lambda x: None, x)


def test_iwae_shape_and_plate_check(vae, x):
    with torch.no_grad():
        bound = iwae_bound(vae.model, vae.guide, x, num_samples=4)
    assert bound.shape == (N,)
    with pytest.raises(ValueError, match="not inside the plate 'batch'"):
        iwae_bound(vae.model, vae.guide, x, num_samples=2, batch_plate="batch")


def test_iwae_with_one_sample_is_the_sampled_elbo_without_factors(vae, x):
    with torch.no_grad():
        pyro.set_rng_seed(4)
        bound = iwae_bound(vae.model, vae.guide, x, num_samples=1)
        pyro.set_rng_seed(4)
        terms = elbo_terms(vae.model, vae.guide, x, method="mc")
    expected = terms.recon_total - terms.kl_total  # the free-bits factor is not a density
    torch.testing.assert_close(bound.sum(), expected, rtol=1e-12, atol=1e-10)


def _declined_model(x):
    z = pyro.sample("z", dist.Gamma(x.new_full((3,), 2.0), 1.0).to_event(1))
    pyro.sample("x", dist.Normal(z.sum(), 1.0), obs=x)


def _declined_guide(x):
    pyro.sample("z", dist.LogNormal(x.new_zeros(3), 0.5).to_event(1))


def test_registered_pair_that_declines_falls_back_like_trace_mean_field():
    # Independent ‖ Independent is registered, but LogNormal ‖ Gamma has no closed form: the
    # registered function raises NotImplementedError, and TraceMeanField_ELBO samples the KL.
    x = torch.tensor(1.0, dtype=torch.float64)
    pyro.set_rng_seed(0)
    loss = _f(TraceMeanField_ELBO().loss(_declined_model, _declined_guide, x))
    pyro.set_rng_seed(0)
    terms = elbo_terms(_declined_model, _declined_guide, x, method="analytic")
    assert terms.kl_method == {"z": "mc"}
    assert _f(terms.loss) == pytest.approx(loss, rel=1e-13)
    assert kl_fallback_sites(_declined_model, _declined_guide, x) == {
        "z": ("Independent", "Independent")
    }
