"""Per-example noise: a function of (seed, step, position), used at the guide's Normal sites."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from probgen.vae.data import load_digits_split
from probgen.vae.fast_elbo import elbo_loss
from probgen.vae.noise import FixedNoise, step_noise, step_seed
from probgen.vae.train import TrainConfig, build_vae

TINY = TrainConfig(latent_dim=3, hidden=(16,))


def test_step_noise_depends_on_seed_and_step_only():
    a = step_noise(0, 5, 8, 3)
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(a, step_noise(0, 5, 8, 3))
    assert a.shape == (8, 3) and a.dtype == torch.float32
    assert not torch.equal(a, step_noise(0, 6, 8, 3))
    assert not torch.equal(a, step_noise(1, 5, 8, 3))
    assert step_seed(-1, 0) != step_seed(0, 0) and 0 <= step_seed(-1, 0) < 2**63
    with pytest.raises(ValueError, match="step must be ≥ 0"):
        step_seed(0, -1)


def test_step_noise_is_standard_normal():
    eps = step_noise(7, 0, 20000, 5, torch.float64)
    # Mean and variance of 100000 N(0, 1) draws: 5 standard errors each.
    n = eps.numel()
    assert abs(float(eps.mean())) < 5 / n**0.5
    assert abs(float(eps.var()) - 1) < 5 * (2 / n) ** 0.5


def _vae():
    pyro.clear_param_store()
    torch.manual_seed(0)
    return build_vae(TINY, 64)


def test_guide_uses_the_noise_and_the_model_replays_it():
    vae = _vae()
    x = load_digits_split("counts").train_x[:6]
    eps = step_noise(0, 0, 6, 3)
    with FixedNoise({"z": eps}):
        guide_trace = poutine.trace(vae.guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    loc, scale = vae.encode(x)
    z = guide_trace.nodes["z"]["value"]
    torch.testing.assert_close(z, loc + scale * eps, rtol=0, atol=0)
    assert z.requires_grad and not guide_trace.nodes["z"]["is_observed"]
    assert model_trace.nodes["z"]["value"] is z
    assert torch.equal(model_trace.nodes["x"]["value"], x)  # observed sites untouched


@pytest.mark.parametrize("analytic", [True, False])
def test_shard_losses_add_up_to_the_full_batch_loss_and_gradient(analytic):
    # What DDP relies on: with the rows of each shard given their own rows of the noise, the
    # shard losses sum to the full-batch loss, and so do the gradients.
    vae = _vae()
    x = load_digits_split("counts").train_x[:10]
    eps = step_noise(3, 4, 10, 3)

    def loss_and_grads(rows):
        vae.zero_grad(set_to_none=True)
        with FixedNoise({"z": eps[rows]}):
            loss, _, _ = elbo_loss(vae.model, vae.guide, x[rows], 0.5, analytic=analytic)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in vae.named_parameters()}

    full, full_grads = loss_and_grads(slice(None))
    (a, grads_a), (b, grads_b) = (
        loss_and_grads(slice(0, None, 2)),
        loss_and_grads(slice(1, None, 2)),
    )
    torch.testing.assert_close(a + b, full, rtol=1e-6, atol=0)
    for name, g in full_grads.items():
        torch.testing.assert_close(grads_a[name] + grads_b[name], g, rtol=1e-5, atol=1e-5)
    # Noise of another step gives another loss: the check above can fail.
    with FixedNoise({"z": step_noise(3, 5, 10, 3)}):
        other, _, _ = elbo_loss(vae.model, vae.guide, x, 0.5, analytic=analytic)
    assert not torch.isclose(other.detach(), full)


def test_pyro_elbo_sees_the_same_samples():
    vae = _vae()
    x = load_digits_split("counts").train_x[:8]
    eps = step_noise(0, 1, 8, 3)
    with FixedNoise({"z": eps}):
        ours, _, _ = elbo_loss(vae.model, vae.guide, x, 1.0, analytic=False)
        theirs = pyro.infer.Trace_ELBO().differentiable_loss(vae.model, vae.guide, x, 1.0)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)


def test_bad_sites_and_shapes_are_reported():
    def guide():
        pyro.sample("w", dist.Gamma(2.0, 1.0))

    with (
        pytest.raises(NotImplementedError, match="site 'w' has Gamma"),
        FixedNoise({"w": torch.zeros(())}),
    ):
        guide()
    vae = _vae()
    x = load_digits_split("counts").train_x[:4]
    with (
        pytest.raises(ValueError, match=r"shape \(5, 3\), the site has \(4, 3\)"),
        FixedNoise({"z": torch.zeros(5, 3)}),
    ):
        vae.guide(x)
