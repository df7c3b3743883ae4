r"""Observation models p(x | z) of a VAE decoder, with their reconstruction losses.

A :class:`Likelihood` turns the decoder's output (a tensor of shape ``(..., num_params(D))``)
into a distribution over one data row ``x`` of event shape ``(D,)``, independent over pixels:
:math:`p(x \mid z) = \prod_{d=1}^D p(x_d \mid \eta_d(z))`. Its reconstruction loss is
:math:`-\log p(x \mid z)` in nats, shape ``(...)``, and :meth:`Likelihood.check_support` rejects
data outside the support (``ValueError`` naming the bad value and its row) before training.

==========================  ==========================  ============================================
name                        support of one pixel        decoder output per pixel
==========================  ==========================  ============================================
``bernoulli``               {0, 1}                      1 logit
``binomial``                integers 0 … n              1 logit (n = ``total_count``)
``continuous_bernoulli``    [0, 1]                      1 logit
``gaussian``                ℝ                           1 mean (scale fixed)
``gaussian_learned``        ℝ                           1 mean (scale a free parameter)
``laplace``                 ℝ                           1 location (scale fixed or learned)
``categorical``             integers 0 … L − 1          L logits
==========================  ==========================  ============================================

How the usual losses relate (derivations in ``docs/vae.md``): MSE is the Gaussian negative
log-likelihood up to the scale 1/(2σ²) and the constant (D/2) log(2πσ²); binary cross-entropy
is the Bernoulli negative log-likelihood on {0, 1} data, and on grey values in (0, 1) it is *not*
a normalized likelihood (ContinuousBernoulli adds the missing normalizer).

Reference: Kingma & Welling (2014), "Auto-Encoding Variational Bayes", appendix C;
Loaiza-Ganem & Cunningham (2019), "The continuous Bernoulli".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from pyro.distributions import (
    Bernoulli,
    Binomial,
    Categorical,
    ContinuousBernoulli,
    Independent,
    Laplace,
    Normal,
)
from torch import Tensor, nn
from torch.distributions import Distribution

__all__ = [
    "LIKELIHOODS",
    "BernoulliLikelihood",
    "BinomialLikelihood",
    "CategoricalLikelihood",
    "ContinuousBernoulliLikelihood",
    "GaussianLikelihood",
    "LaplaceLikelihood",
    "Likelihood",
    "get_likelihood",
]


class Likelihood(nn.Module):
    """The observation model p(x | z) of a decoder, independent over the ``D`` pixels.

    A ``torch.nn.Module`` so that learned parameters (a Gaussian's learned scale) train with the
    decoder. Distributions are Pyro's wrappers of torch's (usable at ``pyro.sample`` sites).
    Subclasses define :meth:`num_params`, :meth:`_base` and :meth:`_in_support`.
    """

    name: str = ""
    support: str = ""

    def setup(self, data_dim: int) -> None:
        """Create parameters that depend on the data dimension ``D`` (called by ``VAE``)."""

    def num_params(self, data_dim: int) -> int:
        """Width of the decoder output needed for ``data_dim`` pixels."""
        return data_dim

    def _base(self, decoder_out: Tensor) -> Distribution:
        raise NotImplementedError

    def _in_support(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def distribution(self, decoder_out: Tensor) -> Distribution:
        """p(x | z) from the decoder output of shape ``(..., num_params(D))``.

        Returns:
            A distribution with ``batch_shape == decoder_out.shape[:-1]`` and
            ``event_shape == (D,)``.
        """
        return Independent(self._base(decoder_out), 1)

    def reconstruction_loss(self, decoder_out: Tensor, x: Tensor) -> Tensor:
        """−log p(x | z) in nats: decoder output ``(..., num_params(D))``, data ``(..., D)``
        → shape ``(...)``."""
        return -self.distribution(decoder_out).log_prob(x)

    def encoder_input(self, x: Tensor) -> Tensor:
        """The data as the encoder sees it (counts scaled to [0, 1]); identity by default."""
        return x

    def check_support(self, x: Tensor) -> None:
        """Raise ``ValueError`` naming the first value outside the support and its row.

        Args:
            x: data of shape ``(N, D)`` (rows are examples) or ``(D,)``.
        """
        if not torch.is_tensor(x):
            raise ValueError(f"x must be a tensor, got {type(x).__name__}")
        rows = x.reshape(1, -1) if x.dim() <= 1 else x.reshape(x.shape[0], -1)
        ok = self._in_support(rows)
        if x.is_floating_point():
            ok = ok & ~torch.isnan(rows)
        if not bool(ok.all()):
            row, col = (int(i) for i in (~ok).nonzero()[0])
            raise ValueError(
                f"x[{row}, {col}] = {rows[row, col].item()!r} (row {row}) is outside the support "
                f"of the {self.name} likelihood: {self.support}"
            )

    def extra_repr(self) -> str:
        return self.name


def _is_integer(x: Tensor) -> Tensor:
    return x == torch.round(x) if x.is_floating_point() else torch.ones_like(x, dtype=torch.bool)


class BernoulliLikelihood(Likelihood):
    """Bernoulli(logits) per pixel on binary data; loss = binary cross-entropy with logits.

    ``allow_fractional=True`` accepts grey values in [0, 1] and returns the cross-entropy
    −[x log p + (1 − x) log(1 − p)], which is then **not** a normalized log-likelihood (use
    ``continuous_bernoulli`` for that); it exists to reproduce the common practice.
    """

    name = "bernoulli"

    def __init__(self, allow_fractional: bool = False) -> None:
        super().__init__()
        self.allow_fractional = bool(allow_fractional)
        self.support = "values in [0, 1] (not normalized)" if allow_fractional else "{0, 1}"

    def _base(self, decoder_out: Tensor) -> Distribution:
        # validate_args=False lets fractional data through when allow_fractional is set;
        # check_support is the gate.
        return Bernoulli(logits=decoder_out, validate_args=False if self.allow_fractional else None)

    def _in_support(self, x: Tensor) -> Tensor:
        if self.allow_fractional:
            return (x >= 0) & (x <= 1)
        return (x == 0) | (x == 1)


class BinomialLikelihood(Likelihood):
    """Binomial(total_count = n, logits) per pixel, for integer counts 0 … n (digits: n = 16).

    log p(x | z) = Σ_d [log C(n, x_d) + x_d ℓ_d − n log(1 + e^{ℓ_d})] with logits ℓ.
    """

    name = "binomial"

    def __init__(self, total_count: int = 16) -> None:
        super().__init__()
        if isinstance(total_count, bool) or not isinstance(total_count, int) or total_count < 1:
            raise ValueError(f"total_count must be an integer ≥ 1, got {total_count!r}")
        self.total_count = total_count
        self.support = f"integers 0 … {total_count}"

    def _base(self, decoder_out: Tensor) -> Distribution:
        return Binomial(total_count=self.total_count, logits=decoder_out)

    def _in_support(self, x: Tensor) -> Tensor:
        return (x >= 0) & (x <= self.total_count) & _is_integer(x)

    def encoder_input(self, x: Tensor) -> Tensor:
        return x / self.total_count

    def extra_repr(self) -> str:
        return f"binomial, total_count={self.total_count}"


class ContinuousBernoulliLikelihood(Likelihood):
    """ContinuousBernoulli(logits) per pixel on values in [0, 1]: the normalized version of the
    cross-entropy, p(x | λ) = C(λ) λ^x (1 − λ)^{1−x} (Loaiza-Ganem & Cunningham, 2019)."""

    name = "continuous_bernoulli"
    support = "values in [0, 1]"

    def _base(self, decoder_out: Tensor) -> Distribution:
        return ContinuousBernoulli(logits=decoder_out)

    def _in_support(self, x: Tensor) -> Tensor:
        return (x >= 0) & (x <= 1)


class _LocationScale(Likelihood):
    """Location from the decoder; scale fixed, or learned: one shared or one per pixel."""

    family: type[Distribution] = Normal
    support = "finite real values"

    def __init__(
        self, scale: float = 1.0, learn: str | None = None, min_scale: float = 1e-3
    ) -> None:
        super().__init__()
        if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
        if learn not in (None, "shared", "per_pixel"):
            raise ValueError(f"learn must be None, 'shared' or 'per_pixel', got {learn!r}")
        if not (0 <= min_scale < scale):
            raise ValueError(f"min_scale must be in [0, scale={scale}), got {min_scale!r}")
        self.learn = learn
        self.min_scale = float(min_scale)
        self.init_scale = float(scale)
        if learn == "shared":
            self.raw_scale = nn.Parameter(self._inverse(scale).reshape(()))

    def _inverse(self, scale: float, size: int = 1) -> Tensor:
        # scale = min_scale + softplus(raw)  ⇔  raw = log(expm1(scale − min_scale))
        raw = math.log(math.expm1(scale - self.min_scale))
        return torch.full((size,), raw)

    def setup(self, data_dim: int) -> None:
        if self.learn == "per_pixel" and not hasattr(self, "raw_scale"):
            self.raw_scale = nn.Parameter(self._inverse(self.init_scale, data_dim))

    @property
    def scale(self) -> Tensor:
        """σ: a scalar, or shape ``(D,)`` when learned per pixel."""
        if self.learn is None:
            return torch.tensor(self.init_scale)
        if not hasattr(self, "raw_scale"):
            raise RuntimeError("per-pixel scale: call setup(data_dim) first (VAE does)")
        return self.min_scale + F.softplus(self.raw_scale)

    def _base(self, decoder_out: Tensor) -> Distribution:
        if self.learn is None:
            scale = decoder_out.new_tensor(self.init_scale)
        else:
            scale = self.scale.to(decoder_out.dtype)
        return self.family(decoder_out, scale.expand(decoder_out.shape))

    def _in_support(self, x: Tensor) -> Tensor:
        return torch.isfinite(x)

    def extra_repr(self) -> str:
        kind = "fixed" if self.learn is None else f"learned {self.learn}"
        return f"{self.name}, scale={kind} (init {self.init_scale})"


class GaussianLikelihood(_LocationScale):
    """Normal(μ(z), σ²) per pixel. −log p = ‖x − μ‖²/(2σ²) + D log σ + (D/2) log 2π, i.e. the
    MSE times D/(2σ²) plus a constant when σ is fixed."""

    name = "gaussian"
    family = Normal


class LaplaceLikelihood(_LocationScale):
    """Laplace(μ(z), b) per pixel. −log p = ‖x − μ‖₁/b + D log(2b): the L1 loss, scaled."""

    name = "laplace"
    family = Laplace


class CategoricalLikelihood(Likelihood):
    """Categorical over ``num_levels`` L pixel values 0 … L − 1, L logits per pixel: a fully
    flexible distribution for each quantized pixel (digits: L = 17)."""

    name = "categorical"

    def __init__(self, num_levels: int = 17) -> None:
        super().__init__()
        if isinstance(num_levels, bool) or not isinstance(num_levels, int) or num_levels < 2:
            raise ValueError(f"num_levels must be an integer ≥ 2, got {num_levels!r}")
        self.num_levels = num_levels
        self.support = f"integers 0 … {num_levels - 1}"

    def num_params(self, data_dim: int) -> int:
        return data_dim * self.num_levels

    def _base(self, decoder_out: Tensor) -> Distribution:
        if decoder_out.shape[-1] % self.num_levels:
            raise ValueError(
                f"decoder output width {decoder_out.shape[-1]} is not a multiple of "
                f"num_levels={self.num_levels}"
            )
        logits = decoder_out.reshape(*decoder_out.shape[:-1], -1, self.num_levels)
        return Categorical(logits=logits)

    def _in_support(self, x: Tensor) -> Tensor:
        return (x >= 0) & (x <= self.num_levels - 1) & _is_integer(x)

    def encoder_input(self, x: Tensor) -> Tensor:
        return x / (self.num_levels - 1)

    def extra_repr(self) -> str:
        return f"categorical, num_levels={self.num_levels}"


def _gaussian_learned(scale: float = 1.0, learn: str = "per_pixel", **kw: Any) -> Likelihood:
    return GaussianLikelihood(scale=scale, learn=learn, **kw)


LIKELIHOODS: dict[str, Callable[..., Likelihood]] = {
    "bernoulli": BernoulliLikelihood,
    "binomial": BinomialLikelihood,
    "continuous_bernoulli": ContinuousBernoulliLikelihood,
    "gaussian": GaussianLikelihood,
    "gaussian_learned": _gaussian_learned,
    "laplace": LaplaceLikelihood,
    "categorical": CategoricalLikelihood,
}


def get_likelihood(name: str, **kwargs: Any) -> Likelihood:
    """The likelihood called ``name`` (see :data:`LIKELIHOODS`), built with ``kwargs``.

    Raises:
        ValueError: on an unknown name (the message lists the valid ones).
    """
    if name not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {name!r}; valid names: {sorted(LIKELIHOODS)}")
    return LIKELIHOODS[name](**kwargs)
