"""The digits data for VAE training: a fixed train/test split, pixel encodings, mini-batches.

scikit-learn's bundled digits (:func:`sklearn.datasets.load_digits`) are 1797 images of 8×8
pixels whose values are integer counts 0…16 (each pixel counts the dark cells of a 4×4 block of
the original 32×32 bitmap). Which encoding of the pixels is right depends on the likelihood:

- ``"counts"``: the raw integers 0…16, for ``Binomial(16, p)`` per pixel (and ``Categorical``
  over the 17 values). ``Binomial(16, p)`` is a normalized distribution over exactly these
  values, so the ELBO and IWAE are log-likelihoods of the data in nats.
- ``"binary"``: ``1`` where the count is above 8 (more than half the block dark), else ``0``, for
  ``Bernoulli``: again a proper likelihood, of the binarized data.
- ``"unit"``: counts / 16 in [0, 1], for the continuous likelihoods (``ContinuousBernoulli``,
  ``Gaussian``, ``Laplace``); their log-likelihoods are densities of the scaled data.

Reference: E. Alpaydin, C. Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine
Learning Repository (1998), the source of scikit-learn's copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

#: Largest pixel value of the digits (a count of 4×4 = 16 cells).
PIXEL_MAX = 16
#: Number of images in scikit-learn's digits.
NUM_IMAGES = 1797
#: Size of the fixed test set (the remaining 1500 images train).
TEST_SIZE = 297
#: Pixel encodings and what they mean (see the module docstring).
ENCODINGS: dict[str, str] = {
    "counts": "integer counts 0…16",
    "binary": "1 where the count is above 8, else 0",
    "unit": "counts / 16 in [0, 1]",
}
# The encoding under which each likelihood is a proper model of the digits.
_DEFAULT_ENCODING = {
    "binomial": "counts",
    "categorical": "counts",
    "bernoulli": "binary",
    "continuous_bernoulli": "unit",
    "gaussian": "unit",
    "gaussian_learned": "unit",
    "laplace": "unit",
}


@dataclass(frozen=True)
class DigitsSplit:
    """A train/test split of the digits, pixels encoded for one likelihood.

    ``train_x``: ``(n_train, 64)`` float; ``train_y``: ``(n_train,)`` long digit labels 0…9;
    likewise ``test_x``, ``test_y``. ``encoding`` is one of :data:`ENCODINGS`.
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    encoding: str

    @property
    def data_dim(self) -> int:
        """Number of pixels per image (64)."""
        return int(self.train_x.shape[1])


def default_encoding(likelihood: str) -> str:
    """The pixel encoding under which ``likelihood`` is a proper model of the digits.

    Unknown names fall back to ``"unit"``; the likelihood's own support check then decides.
    """
    return _DEFAULT_ENCODING.get(likelihood, "unit")


def encode_pixels(counts: Tensor, encoding: str) -> Tensor:
    """Encode integer pixel counts 0…16 of shape ``(n, 64)``; returns the same shape.

    ``"counts"`` keeps them, ``"binary"`` maps count > 8 to 1 and the rest to 0, ``"unit"``
    divides by 16. Raises ``ValueError`` for an unknown encoding or counts outside 0…16.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {sorted(ENCODINGS)}, got {encoding!r}")
    bad = (counts < 0) | (counts > PIXEL_MAX) | (counts != torch.round(counts))
    if bool(bad.any()):
        row, col = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"counts must be integers in [0, {PIXEL_MAX}], got {float(counts[row, col])} "
            f"at row {row}, pixel {col}"
        )
    if encoding == "counts":
        return counts.clone()
    if encoding == "binary":
        return (counts > PIXEL_MAX / 2).to(counts.dtype)
    return counts / PIXEL_MAX


def load_digits_split(
    encoding: str = "counts",
    *,
    test_size: int = TEST_SIZE,
    split_seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> DigitsSplit:
    """Load scikit-learn's digits and split them into a fixed, stratified train/test split.

    The split depends only on ``test_size`` and ``split_seed`` (not on the training seed), so
    runs with different seeds are evaluated on the same test images. Default: 1500 train, 297
    test images.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0 < test_size < NUM_IMAGES:
        raise ValueError(f"test_size must be in (0, {NUM_IMAGES}), got {test_size}")
    digits = load_digits()
    train_idx, test_idx = train_test_split(
        torch.arange(NUM_IMAGES).numpy(),
        test_size=test_size,
        random_state=split_seed,
        stratify=digits.target,
    )
    counts = torch.as_tensor(digits.data, dtype=dtype)
    labels = torch.as_tensor(digits.target, dtype=torch.long)
    x = encode_pixels(counts, encoding)
    train_idx, test_idx = torch.as_tensor(train_idx), torch.as_tensor(test_idx)
    return DigitsSplit(x[train_idx], labels[train_idx], x[test_idx], labels[test_idx], encoding)


def minibatches(num_rows: int, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    """Indices of one epoch of shuffled mini-batches; the last one may be smaller.

    The permutation is drawn from ``generator`` (not the global RNG), so the order of the data
    is reproducible from the generator's state alone. Returns a list of ``(≤ batch_size,)`` long
    tensors covering ``range(num_rows)`` exactly once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    perm = torch.randperm(num_rows, generator=generator)
    return list(perm.split(batch_size))
