"""The training loop: alternating updates, exact resume, atomic checkpoints, any nn.Module."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import probgen.gan.train as train_module
from probgen.gan.train import CHECKPOINT, TrainConfig, make_discriminator, train

TINY = dict(steps=12, batch_size=16, hidden=8, latent_dim=2, checkpoint_every=5)


def _same_state(a, b):
    for ma, mb in ((a.generator, b.generator), (a.discriminator, b.discriminator)):
        for (ka, va), (kb, vb) in zip(
            ma.state_dict().items(), mb.state_dict().items(), strict=True
        ):
            assert ka == kb and torch.equal(va, vb), ka
    assert a.history == b.history and a.step == b.step


@pytest.mark.parametrize("loss", ["minimax", "non-saturating"])
@pytest.mark.parametrize("data", ["ring", "mixture1d"])
def test_tiny_run_records_value_per_step(loss, data):
    state = train(TrainConfig(data=data, loss=loss, **TINY))
    assert state.step == 12 and [r["step"] for r in state.history] == list(range(1, 13))
    for row in state.history:
        assert math.isfinite(row["value"]) and row["value"] <= 0.0  # both terms are log-probs
        assert row["value_se"] > 0 and row["d_loss"] == pytest.approx(-row["value"])
    # The global RNG is left as it was.
    before = torch.get_rng_state()
    train(TrainConfig(data=data, loss=loss, **TINY))
    assert torch.equal(before, torch.get_rng_state())


def test_resume_equals_uninterrupted(tmp_path):
    full = train(TrainConfig(**TINY), tmp_path / "full")
    train(TrainConfig(**{**TINY, "steps": 7}), tmp_path / "split")
    resumed = train(TrainConfig(**TINY), tmp_path / "split", resume=True)
    _same_state(full, resumed)


def test_resume_after_a_crash_equals_uninterrupted(tmp_path, monkeypatch):
    full = train(TrainConfig(**TINY), tmp_path / "full")
    step = train_module._step

    def crash_at_8(state):
        if state.step == 8:
            raise KeyboardInterrupt
        return step(state)

    monkeypatch.setattr(train_module, "_step", crash_at_8)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(**TINY), tmp_path / "crash")
    monkeypatch.setattr(train_module, "_step", step)
    # The last checkpoint is from step 5; steps 6–8 are redone identically.
    assert torch.load(tmp_path / "crash" / CHECKPOINT, weights_only=True)["step"] == 5
    resumed = train(TrainConfig(**TINY), tmp_path / "crash", resume=True)
    _same_state(full, resumed)


def test_checkpoint_written_atomically(tmp_path, monkeypatch):
    train(TrainConfig(**TINY), tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT]  # no temporary file left
    good = (tmp_path / CHECKPOINT).read_bytes()

    def failing_save(obj, path):
        with open(path, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        train(TrainConfig(**{**TINY, "steps": 14}), tmp_path, resume=True)
    assert (tmp_path / CHECKPOINT).read_bytes() == good  # the old checkpoint survives


def test_resume_checks(tmp_path):
    with pytest.raises(ValueError, match="needs an existing checkpoint"):
        train(TrainConfig(**TINY), tmp_path, resume=True)
    train(TrainConfig(**TINY), tmp_path)
    with pytest.raises(ValueError, match=r"lr=0\.001.*lr=0\.01"):
        train(TrainConfig(**{**TINY, "lr": 0.01}), tmp_path, resume=True)


def test_pyro_module_generator_trains():
    from pyro.nn import PyroModule

    generator = PyroModule[nn.Sequential](
        PyroModule[nn.Linear](2, 8), nn.ReLU(), PyroModule[nn.Linear](8, 2)
    )
    before = [p.detach().clone() for p in generator.parameters()]
    state = train(TrainConfig(**{**TINY, "steps": 3}), generator=generator)
    assert state.generator is generator
    assert all(not torch.equal(a, b) for a, b in zip(before, generator.parameters(), strict=True))


def test_divergence_raises():
    class NaNDiscriminator(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = make_discriminator(2, 8)

        def forward(self, x):
            return self.net(x) * float("nan")

    with pytest.raises(FloatingPointError, match="diverged at step 0"):
        train(TrainConfig(**TINY), discriminator=NaNDiscriminator())


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("loss", "wgan", "loss must be one of"),
        ("data", "moons", "data must be one of"),
        ("steps", -1, "steps must be an integer"),
        ("batch_size", 1, "batch_size must be an integer ≥ 2"),
        ("lr", 0.0, "lr must be > 0"),
        ("label_smoothing", 1.0, "label_smoothing"),
    ],
)
def test_bad_config(field, value, match):
    with pytest.raises(ValueError, match=match):
        train(TrainConfig(**{**TINY, field: value}))
