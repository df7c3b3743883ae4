r"""The GAN value function and its losses, computed on discriminator logits.

With a discriminator :math:`D(x) = \sigma(\ell(x))` given by its logit :math:`\ell`,

.. math::

    V(D, G) = E_{x \sim p_{data}}[\log D(x)] + E_{z \sim p_z}[\log(1 - D(G(z)))],

and every term is taken from the logit in its stable form,
:math:`\log D = -\operatorname{softplus}(-\ell)` and
:math:`\log(1 - D) = -\operatorname{softplus}(\ell)`: finite for every finite logit, where
``log(sigmoid(l))`` underflows to ``-inf`` at ``l ≈ -89`` in float32, and
``log(1 - sigmoid(l))`` already at ``l ≈ 17``.

Reference: Goodfellow et al., *Generative Adversarial Nets*, NeurIPS 2014, eq. (1); the
non-saturating generator loss is from §3 of the same paper. Derivations in ``docs/gan.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from probgen.gan.checks import check_label_smoothing, check_logits, check_pair

__all__ = [
    "GENERATOR_LOSSES",
    "GANValue",
    "discriminator_loss",
    "generator_loss",
    "log_d",
    "log_one_minus_d",
    "minimax_generator_loss",
    "non_saturating_generator_loss",
    "value_estimate",
]

GeneratorLoss = Literal["minimax", "non-saturating"]
GENERATOR_LOSSES: tuple[str, ...] = ("minimax", "non-saturating")


def log_d(logits: torch.Tensor) -> torch.Tensor:
    r"""log D = log σ(ℓ) = −softplus(−ℓ), elementwise; finite for every finite logit.

    Computed with ``logsigmoid``, accurate to a few ulps everywhere; ``-F.softplus(-l)`` is not,
    since torch's softplus returns its input unchanged above 20 (an absolute error up to
    e^{−20} ≈ 2e−9, i.e. a relative error ~1e−10 in float64 near ℓ = −21).
    """
    return F.logsigmoid(logits)


def log_one_minus_d(logits: torch.Tensor) -> torch.Tensor:
    r"""log(1 − D) = log σ(−ℓ) = −softplus(ℓ), elementwise; finite for every finite logit.

    Computed as ``logsigmoid(−ℓ)`` (see :func:`log_d`).
    """
    return F.logsigmoid(-logits)


@dataclass(frozen=True)
class GANValue:
    """A batch estimate of V(D, G) with its standard error.

    Attributes:
        value: mean of log D(x) over the real batch plus mean of log(1 − D(G(z))) over the
            generated batch, shape ``B`` (the logits' shape without the sample dimension).
            Differentiable.
        stderr: its standard error, ``sqrt(var_real / n_real + var_fake / n_fake)`` (the two
            batch means are independent), shape ``B``, detached.
        real_term: mean of log D(x) over the real batch, shape ``B``.
        fake_term: mean of log(1 − D(G(z))) over the generated batch, shape ``B``.
        num_real, num_fake: the batch sizes.
    """

    value: torch.Tensor
    stderr: torch.Tensor
    real_term: torch.Tensor
    fake_term: torch.Tensor
    num_real: int
    num_fake: int

    def __repr__(self) -> str:
        if self.value.numel() == 1:
            shown = f"{self.value.item():.6g} ± {self.stderr.item():.3g}"
        else:
            shown = f"tensor(shape={tuple(self.value.shape)})"
        return f"GANValue({shown}, num_real={self.num_real}, num_fake={self.num_fake})"


def value_estimate(
    real_logits: torch.Tensor,
    fake_logits: torch.Tensor,
    *,
    validate: bool = True,
) -> GANValue:
    r"""Estimate V(D, G) from discriminator logits on a real and a generated batch.

    :math:`\hat V = \frac{1}{n_r}\sum_i \log D(x_i) + \frac{1}{n_f}\sum_j \log(1 - D(G(z_j)))`,
    unbiased, with standard error
    :math:`\sqrt{s_r^2/n_r + s_f^2/n_f}` (sample variances; the two means are independent).

    Args:
        real_logits: ℓ(x_i) on real data, shape ``(n_real, *B)`` with ``n_real ≥ 2``.
        fake_logits: ℓ(G(z_j)) on generated data, shape ``(n_fake, *B)`` with ``n_fake ≥ 2``.
            Dimension 0 is the sample dimension; the trailing shapes ``B`` must be equal.
        validate: check shapes and finiteness (``ValueError`` naming the argument), and warn
            with :class:`ProbabilitiesAsLogitsWarning` when every value lies in [0, 1].

    Returns:
        :class:`GANValue` with tensors of shape ``B``.

    Reference: Goodfellow et al. (2014), eq. (1).
    """
    if validate:
        check_pair(real_logits, fake_logits, min_samples=2)
    real = log_d(real_logits)
    fake = log_one_minus_d(fake_logits)
    n_real, n_fake = real.shape[0], fake.shape[0]
    real_term, fake_term = real.mean(0), fake.mean(0)
    var = real.detach().var(0) / n_real + fake.detach().var(0) / n_fake
    return GANValue(
        value=real_term + fake_term,
        stderr=var.sqrt(),
        real_term=real_term,
        fake_term=fake_term,
        num_real=n_real,
        num_fake=n_fake,
    )


def discriminator_loss(
    real_logits: torch.Tensor,
    fake_logits: torch.Tensor,
    *,
    label_smoothing: float = 0.0,
    validate: bool = True,
) -> torch.Tensor:
    r"""The discriminator's loss, −V(D, G) (the binary cross-entropy of real vs generated).

    :math:`L_D = -\overline{[(1-\alpha)\log D(x) + \alpha \log(1 - D(x))]}
    - \overline{\log(1 - D(G(z)))}`. With the default ``label_smoothing`` α = 0 this is exactly
    :math:`-\hat V`; α > 0 is one-sided label smoothing (real targets 1 − α, Salimans et al.,
    *Improved Techniques for Training GANs*, 2016, §3.4), which moves the optimal discriminator
    to :math:`(1-\alpha)\,p_{data}/(p_{data} + p_g)`, so the loss is then no longer −V.

    Args:
        real_logits: shape ``(n_real, *B)``; fake_logits: shape ``(n_fake, *B)``.
        label_smoothing: α in [0, 1), off (0) by default.
        validate: check the arguments (see :func:`value_estimate`).

    Returns:
        Tensor of shape ``B``.
    """
    check_label_smoothing(label_smoothing)
    if validate:
        check_pair(real_logits, fake_logits, min_samples=1)
    real = log_d(real_logits)
    if label_smoothing:
        real = (1.0 - label_smoothing) * real + label_smoothing * log_one_minus_d(real_logits)
    return -(real.mean(0) + log_one_minus_d(fake_logits).mean(0))


def minimax_generator_loss(fake_logits: torch.Tensor, *, validate: bool = True) -> torch.Tensor:
    r"""The minimax generator loss :math:`\overline{\log(1 - D(G(z)))}`, shape ``B``.

    The generator's part of V, which G minimizes. Its gradient in the logit is
    :math:`-\sigma(\ell)`, which vanishes as D rejects fakes confidently (ℓ → −∞): the loss
    saturates early in training. Goodfellow et al. (2014), eq. (1).

    Args:
        fake_logits: ℓ(G(z)), shape ``(n_fake, *B)``.
    """
    if validate:
        check_logits(fake_logits, "fake_logits")
    return log_one_minus_d(fake_logits).mean(0)


def non_saturating_generator_loss(
    fake_logits: torch.Tensor, *, validate: bool = True
) -> torch.Tensor:
    r"""The non-saturating generator loss :math:`-\overline{\log D(G(z))}`, shape ``B``.

    Same fixed point as the minimax loss, but its gradient in the logit is
    :math:`-(1 - \sigma(\ell))`, close to −1 exactly where the minimax gradient vanishes.
    Goodfellow et al. (2014), §3.

    Args:
        fake_logits: ℓ(G(z)), shape ``(n_fake, *B)``.
    """
    if validate:
        check_logits(fake_logits, "fake_logits")
    return -log_d(fake_logits).mean(0)


def generator_loss(
    fake_logits: torch.Tensor, loss: GeneratorLoss = "non-saturating", *, validate: bool = True
) -> torch.Tensor:
    """The generator loss by name: ``"minimax"`` or ``"non-saturating"`` (default), shape ``B``."""
    if loss == "minimax":
        return minimax_generator_loss(fake_logits, validate=validate)
    if loss == "non-saturating":
        return non_saturating_generator_loss(fake_logits, validate=validate)
    raise ValueError(f"loss must be one of {GENERATOR_LOSSES}, got {loss!r}")
