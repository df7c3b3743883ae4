"""The digits split, pixel encodings and mini-batches of ``probgen.vae.data``."""

from __future__ import annotations

import pytest
import torch

from probgen.vae import LIKELIHOODS, VAE
from probgen.vae.data import (
    ENCODINGS,
    NUM_IMAGES,
    PIXEL_MAX,
    TEST_SIZE,
    default_encoding,
    encode_pixels,
    load_digits_split,
    minibatches,
)


@pytest.fixture(scope="module")
def counts():
    return load_digits_split("counts")


def test_split_sizes_and_labels(counts):
    assert counts.train_x.shape == (NUM_IMAGES - TEST_SIZE, 64)
    assert counts.test_x.shape == (TEST_SIZE, 64)
    assert counts.train_y.shape == (NUM_IMAGES - TEST_SIZE,)
    assert counts.data_dim == 64
    # Stratified: every digit is in the test set in proportion (±1 image).
    all_y = torch.cat([counts.train_y, counts.test_y])
    for digit in range(10):
        expected = (all_y == digit).sum().item() * TEST_SIZE / NUM_IMAGES
        assert abs((counts.test_y == digit).sum().item() - expected) <= 1


def test_split_is_a_partition_of_the_digits(counts):
    from sklearn.datasets import load_digits

    data = torch.as_tensor(load_digits().data, dtype=torch.float32)
    both = torch.cat([counts.train_x, counts.test_x])
    # Same multiset of rows: sort rows lexicographically by a hash-free key.
    key = lambda x: sorted(map(tuple, x.tolist()))  # noqa: E731
    assert key(both) == key(data)


def test_split_does_not_depend_on_the_global_seed(counts):
    torch.manual_seed(12345)
    again = load_digits_split("counts")
    assert torch.equal(again.train_x, counts.train_x)
    assert torch.equal(again.test_y, counts.test_y)
    other = load_digits_split("counts", split_seed=1)
    assert not torch.equal(other.test_x, counts.test_x)


def test_encodings(counts):
    x = counts.train_x
    assert torch.equal(x, x.round()) and x.min() == 0 and x.max() == PIXEL_MAX
    binary = encode_pixels(x, "binary")
    assert set(binary.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(binary.bool(), x > 8)
    unit = encode_pixels(x, "unit")
    assert torch.allclose(unit * PIXEL_MAX, x) and unit.max() == 1.0


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_default_encoding_is_in_the_likelihoods_support(name, counts):
    encoding = default_encoding(name)
    assert encoding in ENCODINGS
    VAE(64, latent_dim=2, hidden=(8,), likelihood=name).check_data(
        encode_pixels(counts.test_x, encoding)
    )


def test_counts_are_outside_bernoulli_support(counts):
    vae = VAE(64, latent_dim=2, hidden=(8,), likelihood="bernoulli")
    with pytest.raises(ValueError, match="outside the support of the bernoulli"):
        vae.check_data(counts.test_x)


def test_encode_pixels_rejects_bad_input():
    with pytest.raises(ValueError, match=r"encoding must be one of .*'binary'.*got 'gray'"):
        encode_pixels(torch.zeros(2, 64), "gray")
    bad = torch.zeros(3, 64)
    bad[2, 5] = 16.5
    with pytest.raises(ValueError, match=r"got 16.5 at row 2, pixel 5"):
        encode_pixels(bad, "counts")
    with pytest.raises(ValueError, match="test_size"):
        load_digits_split(test_size=0)


def test_minibatches_cover_every_row_once():
    gen = torch.Generator().manual_seed(3)
    state = gen.get_state()
    batches = minibatches(1500, 128, gen)
    assert [len(b) for b in batches] == [128] * 11 + [1500 - 11 * 128]
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(1500))
    gen.set_state(state)
    assert all(torch.equal(a, b) for a, b in zip(batches, minibatches(1500, 128, gen), strict=True))
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        minibatches(10, 0, gen)
