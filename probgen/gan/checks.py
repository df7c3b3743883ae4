"""Checks on discriminator logits: a tensor, finite, batch shapes that match, not probabilities."""

from __future__ import annotations

import warnings

import torch

__all__ = [
    "ProbabilitiesAsLogitsWarning",
    "check_label_smoothing",
    "check_logits",
    "check_pair",
]


class ProbabilitiesAsLogitsWarning(UserWarning):
    """Every value passed as a logit lies in [0, 1]: probably D(x) = σ(ℓ), not the logit ℓ."""


def check_logits(
    logits: object, name: str, *, min_samples: int = 1, stacklevel: int = 3
) -> torch.Tensor:
    """Raise ``ValueError`` naming ``name`` unless ``logits`` is a finite floating tensor with
    at least ``min_samples`` entries along dimension 0; warn if all values lie in [0, 1].

    Returns:
        ``logits`` unchanged.
    """
    if not torch.is_tensor(logits):
        raise ValueError(f"{name} must be a torch.Tensor of logits, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {logits.dtype}")
    if logits.dim() == 0:
        raise ValueError(f"{name} must have a sample dimension (dim 0), got a 0-dimensional tensor")
    if logits.shape[0] < min_samples:
        raise ValueError(
            f"{name} needs at least {min_samples} samples along dimension 0, "
            f"got shape {tuple(logits.shape)}"
        )
    values = logits.detach()
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        index = tuple(int(i) for i in (~finite).nonzero()[0])
        raise ValueError(f"{name} must be finite, found {values[index].item()!r} at index {index}")
    if values.numel() > 1 and bool(((values >= 0) & (values <= 1)).all()):
        warnings.warn(
            f"every value of {name} lies in [0, 1]: were probabilities D(x) = sigmoid(logit) "
            f"passed instead of logits? Pass the discriminator's raw output (drop the final "
            f"sigmoid); probgen computes log D = -softplus(-logit) stably from the logit.",
            ProbabilitiesAsLogitsWarning,
            stacklevel=stacklevel,
        )
    return logits


def check_pair(
    real_logits: object, fake_logits: object, *, min_samples: int = 1, stacklevel: int = 4
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check both logit batches; their shapes past the sample dimension must be equal."""
    real = check_logits(real_logits, "real_logits", min_samples=min_samples, stacklevel=stacklevel)
    fake = check_logits(fake_logits, "fake_logits", min_samples=min_samples, stacklevel=stacklevel)
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(
            f"batch shapes do not match: real_logits has shape {tuple(real.shape)}, "
            f"fake_logits has shape {tuple(fake.shape)}; dimension 0 is the sample dimension "
            f"and the remaining dimensions must be equal (a discriminator ending in "
            f"nn.Linear(h, 1) gives shape (n, 1): squeeze(-1) both or neither)"
        )
    if real.dtype != fake.dtype:
        raise ValueError(f"dtypes differ: real_logits is {real.dtype}, fake_logits is {fake.dtype}")
    return real, fake


def check_label_smoothing(label_smoothing: float) -> None:
    """Raise ``ValueError`` unless 0 ≤ ``label_smoothing`` < 1."""
    if not isinstance(label_smoothing, (int, float)) or not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
