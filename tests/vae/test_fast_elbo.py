"""``elbo_loss`` equals Pyro's ELBO losses on the same samples; unsupported guides are refused."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.nn import PyroModule, PyroParam, pyro_method

from probgen.vae.data import load_digits_split
from probgen.vae.fast_elbo import UnsupportedGuide, elbo_loss
from probgen.vae.model import VAE
from probgen.vae.step import Stepper


@pytest.fixture(scope="module")
def x():
    return load_digits_split("counts").train_x[:40]


def _vae(**kwargs):
    pyro.clear_param_store()
    torch.manual_seed(0)
    return VAE(64, latent_dim=3, hidden=(12,), **kwargs)


@pytest.mark.parametrize(
    ("analytic", "elbo_cls"), [(True, TraceMeanField_ELBO), (False, Trace_ELBO)]
)
@pytest.mark.parametrize("beta", [1.0, 0.3, 0.0])
@pytest.mark.parametrize("free_bits", [None, 2.0])
def test_equals_pyro_loss_on_the_same_samples(x, analytic, elbo_cls, beta, free_bits):
    vae = _vae(free_bits=free_bits)
    pyro.set_rng_seed(7)
    loss, recon, kl = elbo_loss(vae.model, vae.guide, x, beta, analytic=analytic)
    pyro.set_rng_seed(7)
    expected = elbo_cls().loss(vae.model, vae.guide, x, beta)
    # Float32 sums of ~2600 terms in another order: agreement to a few ulps of the total.
    assert math.isclose(float(loss.detach()), expected, rel_tol=1e-6)
    assert math.isclose(float(loss.detach()), float(recon + kl), rel_tol=1e-6)
    assert recon > 0 and loss.requires_grad and not recon.requires_grad
    pyro.set_rng_seed(8)
    other = elbo_loss(vae.model, vae.guide, x, beta, analytic=analytic)[0]
    assert float(other.detach()) != float(loss.detach())


def test_gradient_equals_pyro_gradient(x):
    vae = _vae()
    params = list(vae.parameters())
    pyro.set_rng_seed(3)
    ours = torch.autograd.grad(elbo_loss(vae.model, vae.guide, x)[0], params)
    pyro.set_rng_seed(3)
    theirs = torch.autograd.grad(
        TraceMeanField_ELBO().differentiable_loss(vae.model, vae.guide, x), params
    )
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def _model(x, kl_weight=1.0):
    with pyro.plate("data", x.shape[0]):
        c = pyro.sample("c", dist.Bernoulli(0.5))
        pyro.sample("x", dist.Normal(c, 1.0), obs=x)


class DiscretePair(PyroModule):
    """A model/guide pair whose latent site cannot be reparameterized."""

    def __init__(self):
        super().__init__()
        self.p = PyroParam(torch.tensor(0.3), constraint=dist.constraints.unit_interval)
        self.model = _model

    @pyro_method
    def guide(self, x, kl_weight=1.0):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Bernoulli(self.p))


def test_non_reparameterized_guide_is_refused_and_stepper_falls_back():
    pyro.clear_param_store()
    x = torch.randn(5)
    pair = DiscretePair()
    with pytest.raises(UnsupportedGuide, match="'c' is not reparameterized"):
        elbo_loss(pair.model, pair.guide, x)
    stepper = Stepper(pair, "trace", "fast", lr=1e-3)
    pyro.set_rng_seed(1)
    expected = Trace_ELBO().loss(pair.model, pair.guide, x)
    pyro.set_rng_seed(1)
    terms = stepper.step(x)
    assert not stepper._lean
    assert math.isclose(terms.loss, expected, rel_tol=1e-6)


def test_plain_parameters_skip_param_statements_and_restore_the_classes(x):
    from torch import nn

    from probgen.vae.fast_elbo import PlainParameters

    class Scaled(PyroModule):
        def __init__(self):
            super().__init__()
            self.scale = PyroParam(torch.tensor(2.0), dist.constraints.positive)

    pyro.clear_param_store()
    vae = _vae()
    vae.extra = Scaled()
    before = {m: type(m) for m in vae.modules()}
    plain = PlainParameters(vae)

    def param_sites():
        trace = pyro.poutine.trace(vae.guide).get_trace(x[:4])
        return [name for name, site in trace.nodes.items() if site["type"] == "param"]

    with_params = param_sites()
    assert with_params and all(n.startswith("encoder") for n in with_params)
    with pytest.raises(RuntimeError, match="inside"):
        with plain:
            assert type(vae.encoder[0]) is nn.Linear  # a leaf with parameters: plain torch
            assert type(vae.encoder) is not nn.Sequential  # a container: still a PyroModule
            assert type(vae.extra) is Scaled  # a PyroParam owner keeps its Pyro behaviour
            assert param_sites() == []
            raise RuntimeError("inside")
    assert {m: type(m) for m in vae.modules()} == before
    assert param_sites() == with_params
