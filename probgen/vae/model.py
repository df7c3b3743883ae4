r"""A variational autoencoder as a Pyro model/guide pair, with β and free bits done right.

Generative model (``VAE.model``) and amortized posterior (``VAE.guide``), for a batch of N rows:

.. math::
    z_i \sim \mathcal N(0, I_L), \quad x_i \mid z_i \sim p_\theta(x_i \mid z_i);
    \qquad q_\phi(z_i \mid x_i) = \mathcal N(\mu_\phi(x_i), \operatorname{diag}\sigma^2_\phi(x_i)).

**β (KL weight).** The site ``"z"`` is scaled by β in the model *and* in the guide (``pyro.poutine
.scale``; for β = 0, ``poutine.mask(False)``), so that the objective is
:math:`\sum_i E_q[\log p(x_i\mid z_i)] - \beta\,KL(q(z_i\mid x_i)\,\|\,p(z_i))` under both
``Trace_ELBO`` (which scales log p(z) by the model's scale and log q(z) by the guide's) and
``TraceMeanField_ELBO`` (which scales the analytic KL by the guide's scale only). Scaling the
model alone gives β log p(z) − log q(z) under the first and leaves the second almost unchanged.

**Free bits** (Kingma et al. 2016, "Improved variational inference with inverse autoregressive
flow", §C.8) with floor λ nats per latent dimension: the KL part of the objective becomes
:math:`\beta N \sum_j \max(\lambda, \overline{KL}_j)`, where
:math:`\overline{KL}_j = \frac1N\sum_i KL(q(z_{ij}\mid x_i)\,\|\,\mathcal N(0, 1))` is the
batch-mean analytic KL of dimension j. In Pyro it is a correction factor in the model,
``pyro.factor("free_bits", -β N Σ_j max(0, λ − KL̄_j))``, added to the usual ELBO, whose KL part
is β N Σ_j KL̄_j (analytic under ``TraceMeanField_ELBO``; a one-sample estimate of it under
``Trace_ELBO``, so the identity then holds in expectation). Below the floor the gradients of the
two parts cancel: dimensions with KL_j < λ are not pushed further towards the prior.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.nn import PyroModule, pyro_method
from pyro.nn.module import to_pyro_module_
from torch import Tensor, nn

from probgen.vae.likelihoods import Likelihood, get_likelihood

__all__ = ["VAE", "kl_weighted", "mlp"]


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers of the given ``sizes`` (input, hidden…, output), ``activation`` between."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        if i:
            layers.append(activation())
        layers.append(nn.Linear(a, b))
    return nn.Sequential(*layers)


def _check_weight(kl_weight: float) -> float:
    w = float(kl_weight)
    if not (math.isfinite(w) and w >= 0):
        raise ValueError(f"kl_weight must be a finite number ≥ 0, got {kl_weight!r}")
    return w


def kl_weighted(kl_weight: float) -> contextlib.AbstractContextManager:
    """The handler that weights a latent site by β: ``poutine.scale(β)`` for β > 0,
    ``poutine.mask(False)`` for β = 0 (Pyro's scale requires > 0), nothing for β = 1.
    Use it around the same site in the model and in the guide."""
    w = _check_weight(kl_weight)
    if w == 1.0:
        return contextlib.nullcontext()
    if w == 0.0:
        return poutine.mask(mask=False)
    return poutine.scale(scale=w)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer ≥ 1, got {value!r}")
    return value


class VAE(PyroModule):
    """A VAE with MLP encoder and decoder (or your own), prior N(0, I) and a chosen likelihood.

    Args:
        data_dim: D, the width of a data row.
        latent_dim: L.
        hidden: hidden layer widths of the encoder; the decoder uses them reversed.
        likelihood: a name from :data:`probgen.vae.LIKELIHOODS` or a :class:`Likelihood`.
        free_bits: λ ≥ 0, the per-dimension KL floor in nats, or ``None`` (no floor).
        encoder: optional module mapping ``(N, D)`` to ``(N, 2L)`` (location, raw scale).
        decoder: optional module mapping ``(..., L)`` to ``(..., likelihood.num_params(D))``.
        min_scale: floor of the encoder's standard deviation, σ = min_scale + softplus(raw).
        **likelihood_kwargs: passed to :func:`get_likelihood` when ``likelihood`` is a name.
    """

    def __init__(
        self,
        data_dim: int,
        latent_dim: int = 16,
        hidden: Sequence[int] = (400, 200),
        likelihood: str | Likelihood = "binomial",
        free_bits: float | None = None,
        *,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        min_scale: float = 1e-4,
        **likelihood_kwargs: Any,
    ) -> None:
        super().__init__()
        self.data_dim = _positive_int("data_dim", data_dim)
        self.latent_dim = _positive_int("latent_dim", latent_dim)
        hidden = tuple(hidden)
        for h in hidden:
            _positive_int("hidden sizes", h)
        if free_bits is not None and not (math.isfinite(free_bits) and free_bits >= 0):
            raise ValueError(f"free_bits must be None or a finite number ≥ 0, got {free_bits!r}")
        self.free_bits = None if free_bits is None else float(free_bits)
        if not (isinstance(min_scale, int | float) and math.isfinite(min_scale) and min_scale >= 0):
            raise ValueError(f"min_scale must be a finite number ≥ 0, got {min_scale!r}")
        self.min_scale = float(min_scale)
        if isinstance(likelihood, str):
            lik = get_likelihood(likelihood, **likelihood_kwargs)
        elif isinstance(likelihood, Likelihood):
            if likelihood_kwargs:
                raise ValueError(
                    f"likelihood keyword arguments {sorted(likelihood_kwargs)} are only accepted "
                    f"with a likelihood name"
                )
            lik = likelihood
        else:
            raise ValueError(f"likelihood must be a name or a Likelihood, got {likelihood!r}")
        lik.setup(self.data_dim)
        out_dim = lik.num_params(self.data_dim)
        if encoder is None:
            encoder = mlp((self.data_dim, *hidden, 2 * self.latent_dim))
        if decoder is None:
            decoder = mlp((self.latent_dim, *reversed(hidden), out_dim))
        # PyroModule children: their parameters go through the Pyro param store, so SVI with
        # pyro.optim and plain torch optimizers on .parameters() both train them.
        for module in (encoder, decoder, lik):
            to_pyro_module_(module)
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = lik

    @pyro_method
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Location and scale of q(z | x), each of shape ``(N, L)``, from data ``(N, D)``."""
        self._check_width(x)
        h = self.encoder(self.likelihood.encoder_input(x))
        if h.shape[-1] != 2 * self.latent_dim:
            raise ValueError(
                f"encoder output has width {h.shape[-1]}, expected 2 * latent_dim = "
                f"{2 * self.latent_dim}"
            )
        loc, raw = h.split(self.latent_dim, dim=-1)
        return loc, self.min_scale + F.softplus(raw)

    @pyro_method
    def decode(self, z: Tensor) -> Tensor:
        """Decoder output ``(..., num_params(D))`` from latents ``(..., L)``."""
        return self.decoder(z)

    def _check_width(self, x: Tensor) -> None:
        if x.shape[-1] != self.data_dim:
            raise ValueError(
                f"x must have {self.data_dim} columns (data_dim), got shape {tuple(x.shape)}"
            )

    def check_data(self, x: Tensor) -> None:
        """``ValueError`` unless ``x`` has shape ``(N, D)`` and lies in the likelihood's support
        (the message names the bad value and its row)."""
        if not torch.is_tensor(x) or x.dim() != 2 or x.shape[-1] != self.data_dim:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"x must have shape (N, {self.data_dim}), got {shape}")
        self.likelihood.check_support(x)

    @pyro_method
    def kl_per_dim(self, x: Tensor) -> Tensor:
        """Analytic KL(q(z_j | x_i) ‖ N(0, 1)) = ½(μ² + σ² − 1) − log σ, shape ``(N, L)``."""
        loc, scale = self.encode(x)
        return 0.5 * (loc.square() + scale.square() - 1) - torch.log(scale)

    def free_bits_correction(self, x: Tensor, kl_weight: float = 1.0) -> Tensor:
        """−β N Σ_j max(0, λ − KL̄_j): added to the ELBO, it turns the KL part β N Σ_j KL̄_j
        into β N Σ_j max(λ, KL̄_j). Scalar; zero without free bits."""
        if self.free_bits is None:
            return x.new_zeros(())
        kl_bar = self.kl_per_dim(x).mean(0)
        return -_check_weight(kl_weight) * x.shape[0] * F.relu(self.free_bits - kl_bar).sum()

    @pyro_method
    def model(self, x: Tensor, kl_weight: float = 1.0) -> None:
        """p(x, z): latent site ``"z"`` (weighted by β), observed site ``"x"``, plate ``"data"``."""
        self._check_width(x)
        n = x.shape[0]
        with pyro.plate("data", n):
            prior = dist.Normal(x.new_zeros(n, self.latent_dim), 1.0).to_event(1)
            with kl_weighted(kl_weight):
                z = pyro.sample("z", prior)
            pyro.sample("x", self.likelihood.distribution(self.decode(z)), obs=x)
        if self.free_bits is not None:
            pyro.factor("free_bits", self.free_bits_correction(x, kl_weight))

    @pyro_method
    def guide(self, x: Tensor, kl_weight: float = 1.0) -> None:
        """q(z | x): latent site ``"z"`` (weighted by β, as in the model), plate ``"data"``."""
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.encode(x)
            with kl_weighted(kl_weight):
                pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction: the decoder output at the posterior mean, ``(N, num_params(D))``."""
        return self.decode(self.encode(x)[0])
