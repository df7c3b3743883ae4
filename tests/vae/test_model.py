"""VAE model/guide: shapes, β on model and guide, free bits, bad input."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO

from probgen.vae import VAE

N, D, L = 6, 10, 3


@pytest.fixture(autouse=True)
def _fresh_param_store():
    # PyroModule parameters live in the global param store under their module path: two VAEs
    # built in one process would otherwise share "encoder.0.weight".
    pyro.clear_param_store()


@pytest.fixture
def vae() -> VAE:
    return VAE(D, L, hidden=(8,), likelihood="binomial", total_count=16).double()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randint(0, 17, (N, D), generator=torch.Generator().manual_seed(1)).double()


def _f(value) -> float:
    """A loss as a float (Pyro's ``loss`` returns a float or, for some ELBOs, a tensor)."""
    return float(value.detach()) if torch.is_tensor(value) else float(value)


def _terms_by_hand(vae: VAE, x: torch.Tensor, seed: int):
    """recon, analytic KL and log q − log p at the guide's sample for ``seed``, computed
    directly from the networks (no ELBO class involved)."""
    pyro.set_rng_seed(seed)
    z = poutine.trace(vae.guide).get_trace(x).nodes["z"]["value"]
    loc, scale = vae.encode(x)
    recon = vae.likelihood.distribution(vae.decode(z)).log_prob(x).sum()
    log_q = dist.Normal(loc, scale).log_prob(z).sum()
    log_p = dist.Normal(0.0, 1.0).log_prob(z).sum()
    kl = (0.5 * (loc**2 + scale**2 - 1) - scale.log()).sum()
    return recon.detach(), kl.detach(), (log_q - log_p).detach()


def test_shapes_and_sites(vae, x):
    loc, scale = vae.encode(x)
    assert loc.shape == scale.shape == (N, L)
    assert bool((scale > 0).all())
    assert vae.decode(loc).shape == (N, D)
    trace = poutine.trace(vae.model).get_trace(x)
    assert trace.nodes["x"]["is_observed"] and not trace.nodes["z"]["is_observed"]
    assert trace.nodes["z"]["fn"].batch_shape == (N,)


@pytest.mark.parametrize("beta", [0.0, 0.25, 1.0, 4.0])
def test_beta_gives_recon_minus_beta_kl_under_both_elbos(vae, x, beta):
    seed = 3
    recon, kl, kl_sample = _terms_by_hand(vae, x, seed)
    pyro.set_rng_seed(seed)
    mean_field = _f(TraceMeanField_ELBO().loss(vae.model, vae.guide, x, kl_weight=beta))
    pyro.set_rng_seed(seed)
    trace = _f(Trace_ELBO().loss(vae.model, vae.guide, x, kl_weight=beta))
    assert -mean_field == pytest.approx(float(recon - beta * kl), rel=1e-12, abs=1e-12)
    assert -trace == pytest.approx(float(recon - beta * kl_sample), rel=1e-12, abs=1e-12)


def test_scaling_the_model_alone_is_wrong(vae, x):
    """The pitfall the β handling avoids: poutine.scale on the model only gives
    recon + β log p − log q under Trace_ELBO, not recon − β (log q − log p)."""
    beta, seed = 4.0, 3
    recon, _, _ = _terms_by_hand(vae, x, seed)
    pyro.set_rng_seed(seed)
    tr = poutine.trace(vae.guide).get_trace(x)
    z = tr.nodes["z"]["value"]
    log_q = tr.nodes["z"]["fn"].log_prob(z).sum().detach()
    log_p = dist.Normal(0.0, 1.0).log_prob(z).sum().detach()

    def model_scaled_z_only(x):
        with pyro.plate("data", x.shape[0]):
            with poutine.scale(scale=beta):
                z = pyro.sample("z", dist.Normal(x.new_zeros(N, L), 1.0).to_event(1))
            pyro.sample("x", vae.likelihood.distribution(vae.decode(z)), obs=x)

    pyro.set_rng_seed(seed)
    wrong = -_f(Trace_ELBO().loss(model_scaled_z_only, vae.guide, x))
    assert wrong == pytest.approx(float(recon + beta * log_p - log_q), rel=1e-12)
    assert abs(wrong - float(recon - beta * (log_q - log_p))) > 1.0


def _between(kl_bar: torch.Tensor) -> float:
    """A floor strictly between the smallest two of the L = 3 per-dimension KLs."""
    low = kl_bar.sort().values
    return float(low[0] + low[1]) / 2


@pytest.mark.parametrize("beta", [1.0, 2.5])
def test_free_bits_objective(x, beta):
    vae = VAE(D, L, hidden=(8,), free_bits=None).double()
    kl_bar = vae.kl_per_dim(x).mean(0).detach()
    lam = _between(kl_bar)
    assert bool((kl_bar < lam).any()) and bool((kl_bar > lam).any())
    vae.free_bits = lam
    recon, _, _ = _terms_by_hand(vae, x, seed=5)
    target = recon - beta * N * torch.clamp(kl_bar, min=lam).sum()
    pyro.set_rng_seed(5)
    loss = _f(TraceMeanField_ELBO().loss(vae.model, vae.guide, x, kl_weight=beta))
    assert -loss == pytest.approx(float(target), rel=1e-12)


def test_free_bits_stop_the_kl_gradient_below_the_floor(x):
    """d/dθ of the free-bits KL part β N Σ_j max(λ, KL̄_j) is β N Σ_{j: KL̄_j > λ} dKL̄_j/dθ."""
    vae = VAE(D, L, hidden=(8,), free_bits=0.0).double()
    kl_bar = vae.kl_per_dim(x).mean(0)
    vae.free_bits = _between(kl_bar.detach())
    above = kl_bar.detach() > vae.free_bits
    kl_part = N * kl_bar.sum() - vae.free_bits_correction(x)
    expected = N * kl_bar[above].sum()
    params = list(vae.encoder.parameters())
    got = torch.autograd.grad(kl_part, params, retain_graph=True)
    want = torch.autograd.grad(expected, params)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_learned_scale_is_trained_by_svi():
    vae = VAE(D, L, hidden=(8,), likelihood="gaussian_learned", learn="per_pixel")
    x = torch.randn(N, D)
    before = vae.likelihood.raw_scale.detach().clone()
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 0.1}), TraceMeanField_ELBO())
    svi.step(x)
    assert "likelihood.raw_scale" in pyro.get_param_store()
    assert not torch.equal(before, vae.likelihood.raw_scale.detach())


def test_bad_input(vae, x):
    with pytest.raises(ValueError, match=r"shape \(N, 10\)"):
        vae.check_data(x[:, :4])
    bad = x.clone()
    bad[4, 2] = 20.0
    with pytest.raises(ValueError, match=r"x\[4, 2\] = 20.0 \(row 4\)"):
        vae.check_data(bad)
    with pytest.raises(ValueError, match="kl_weight"):
        vae.model(x, kl_weight=-1.0)
    with pytest.raises(ValueError, match="free_bits"):
        VAE(D, L, free_bits=-0.1)
    with pytest.raises(ValueError, match="latent_dim"):
        VAE(D, 0)
    with pytest.raises(ValueError, match="unknown likelihood"):
        VAE(D, L, likelihood="poisson")


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_min_scale_must_be_finite_and_nonnegative(bad):
    with pytest.raises(ValueError, match="min_scale must be a finite number ≥ 0"):
        VAE(64, 2, min_scale=bad)


def test_data_of_the_wrong_width_is_named():
    vae = VAE(64, 2, hidden=(8,))
    with pytest.raises(
        ValueError, match=r"x must have 64 columns \(data_dim\), got shape \(3, 10\)"
    ):
        vae.model(torch.zeros(3, 10))
    with pytest.raises(ValueError, match="x must have 64 columns"):
        vae.guide(torch.zeros(3, 10))
