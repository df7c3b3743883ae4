"""Training on a user's data: arrays and memory-mapped files, support checked before any step."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from probgen.vae.checkpoint import FILENAME, load_checkpoint
from probgen.vae.data import load_digits_split
from probgen.vae.train import TrainConfig, train
from probgen.vae.training_data import EVAL_ROWS, UserSet, training_set
from probgen.vae.user_data import load_array

TINY = TrainConfig(
    likelihood="bernoulli", latent_dim=2, hidden=(16,), batch_size=128, epochs=1, iwae_samples=3
)


@pytest.fixture(scope="module")
def binary_images():
    """The binarized digits as (N, 8, 8) uint8 images."""
    x = load_digits_split("binary").train_x[:600]
    return x.reshape(-1, 8, 8).to(torch.uint8).numpy()


def test_python_api_trains_on_an_array(tmp_path, binary_images):
    result = train(TINY, tmp_path, data=binary_images, progress=False)
    assert isinstance(result.data, UserSet)
    assert result.data.n_train == 540 and result.data.data_dim == 64  # 10 % held out, flattened
    row = result.metrics[0]
    assert row["step"] == 5 and np.isfinite(row["test_elbo"]) and row["test_kl"] >= 0
    # Bernoulli on {0, 1} data: a proper likelihood, so the ELBO is a log-probability ≤ 0.
    assert result.final["test_elbo"] < 0
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# VAE on data") and "loss_curves.png" in report
    assert (tmp_path / "loss_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_memory_mapped_file_trains_and_resumes_like_an_array(tmp_path, binary_images):
    path = tmp_path / "images.npy"
    np.save(path, binary_images)
    config = dataclasses.replace(TINY, data=str(path), epochs=2)
    streamed = train(config, tmp_path / "a", progress=False, plots=False)
    assert streamed.data.split.rows.memory_mapped
    in_memory = train(
        dataclasses.replace(config, data=None), tmp_path / "b", data=binary_images, plots=False
    )
    for key, value in streamed.vae.state_dict().items():
        assert torch.equal(value, in_memory.vae.state_dict()[key]), key
    train(dataclasses.replace(config, epochs=1), tmp_path / "c", progress=False, plots=False)
    resumed = train(config, tmp_path / "c", resume=True, progress=False, plots=False)
    assert resumed.metrics == streamed.metrics
    assert load_checkpoint(tmp_path / "c" / FILENAME)["config"]["data"] == str(path)


def test_data_outside_the_support_fails_before_training(tmp_path, binary_images):
    bad = binary_images.astype(np.float32)
    bad[417, 3, 5] = 0.5  # row 417, column 3·8 + 5 = 29
    with pytest.raises(ValueError, match=r"value 0.5 at row 417, column 29 of data is outside"):
        train(TINY, tmp_path, data=bad, progress=False)
    assert not (tmp_path / FILENAME).exists()


def test_evaluation_rows_are_capped(tmp_path):
    path = tmp_path / "big.npy"
    n = 2 * EVAL_ROWS + 10
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 3))
    x[:] = 1
    x.flush()
    source = training_set(dataclasses.replace(TINY, data=str(path), test_fraction=0.6))
    assert source.eval_x("train").shape == (n - round(0.6 * n), 3)
    assert source.eval_x("test").shape == (EVAL_ROWS, 3)
    assert len(load_array(path)) == n


def test_config_refuses_pixel_encodings_for_user_data():
    with pytest.raises(ValueError, match="pixels='counts' encodes the bundled digits"):
        TrainConfig(data="x.npy", pixels="counts")
    with pytest.raises(ValueError, match="data_key='a' needs data"):
        TrainConfig(data_key="a")
    with pytest.raises(ValueError, match="test_fraction must be in"):
        TrainConfig(test_fraction=1.0)
