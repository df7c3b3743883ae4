"""Training the VAE: fast path = SVI objective, resume = uninterrupted run, Ctrl-C, NaN,
bad input."""

from __future__ import annotations

import dataclasses
import math
import os
import signal

import pyro
import pytest
import torch

from probgen.vae.checkpoint import FILENAME, CheckpointError, load_checkpoint
from probgen.vae.data import load_digits_split
from probgen.vae.step import Stepper
from probgen.vae.train import (
    TrainConfig,
    TrainingDiverged,
    TrainingInterrupted,
    build_vae,
    evaluate,
    resume_config,
    train,
)

# A tiny setting: 6 steps per epoch, a small MLP, a cheap IWAE.
TINY = TrainConfig(latent_dim=2, hidden=(16,), batch_size=256, epochs=3, iwae_samples=5)


def _run(out, config=TINY, **kwargs):
    return train(config, out, progress=False, plots=False, **kwargs)


def _assert_same_run(a, b):
    state_a, state_b = a.vae.state_dict(), b.vae.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
    assert a.metrics == b.metrics
    assert a.final["test_iwae"] == b.final["test_iwae"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("full"))


def _step_with(engine, elbo, x, seed=1):
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = build_vae(dataclasses.replace(TINY, elbo=elbo), x.shape[1])
    stepper = Stepper(vae, elbo, engine, lr=1e-2)
    pyro.set_rng_seed(seed)
    terms = stepper.step(x, 0.7)
    return terms, {k: v.clone() for k, v in vae.state_dict().items()}


@pytest.mark.parametrize("elbo", ["trace", "meanfield"])
def test_fast_path_has_the_svi_objective_and_update(elbo):
    x = load_digits_split("counts").train_x[:64]
    fast, fast_params = _step_with("fast", elbo, x)
    svi, svi_params = _step_with("svi", elbo, x)
    # Same samples, same objective: the losses agree to float32 rounding of a sum of ~64·64
    # terms; one Adam step of lr 1e-2 moves every parameter the same way.
    assert math.isclose(fast.loss, svi.loss, rel_tol=1e-6)
    assert math.isclose(fast.recon, svi.recon, rel_tol=1e-6)
    assert fast.recon > 0 and math.isclose(fast.loss, fast.recon + fast.kl, rel_tol=1e-6)
    for key in fast_params:
        torch.testing.assert_close(fast_params[key], svi_params[key], rtol=1e-5, atol=1e-6)
    # A different seed draws other samples, so the check above can fail.
    other, _ = _step_with("fast", elbo, x, seed=2)
    assert other.loss != fast.loss


def test_fast_loss_equals_pyro_loss_on_the_same_samples():
    x = load_digits_split("counts").train_x[:32]
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = build_vae(TINY, 64)
    for elbo, cls in (
        ("trace", pyro.infer.Trace_ELBO),
        ("meanfield", pyro.infer.TraceMeanField_ELBO),
    ):
        stepper = Stepper(vae, elbo, "fast", lr=1e-12)
        pyro.set_rng_seed(5)
        expected = cls().loss(vae.model, vae.guide, x, 0.5)
        pyro.set_rng_seed(5)
        assert math.isclose(stepper.step(x, 0.5).loss, expected, rel_tol=1e-6)


def test_outputs_and_metrics_are_finite(uninterrupted):
    rows = uninterrupted.metrics
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[-1]["step"] == 18
    for row in rows:
        assert all(math.isfinite(v) for v in row.values())
        assert math.isclose(row["test_elbo"], -(row["test_recon"] + row["test_kl"]))
        assert row["test_kl"] >= 0
    final = uninterrupted.final
    # IWAE(K) ≥ ELBO in expectation; with K = 5 on 297 images the gap is far above noise.
    assert final["test_iwae"] > final["test_elbo"]
    for name in ("metrics.csv", "metrics.json", "report.md", FILENAME):
        assert (uninterrupted.out_dir / name).is_file()


def test_resume_equals_uninterrupted_run(tmp_path, uninterrupted):
    _run(tmp_path, dataclasses.replace(TINY, epochs=1))
    assert load_checkpoint(tmp_path / FILENAME)["epoch"] == 1
    resumed = _run(tmp_path, resume=True)
    _assert_same_run(resumed, uninterrupted)


def test_ctrl_c_saves_a_checkpoint_mid_epoch_and_resume_continues(tmp_path, uninterrupted):
    def hook(epoch, step):
        if step == 8:  # epoch 2, batch 2 of 6
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match="epoch 2 after step 8") as info:
        _run(tmp_path, step_hook=hook)
    saved = load_checkpoint(info.value.checkpoint)
    assert (saved["epoch"], saved["step"], saved["batch"]) == (1, 8, 2)
    _assert_same_run(_run(tmp_path, resume=True), uninterrupted)


@pytest.mark.parametrize(
    ("module", "named", "not_named"),
    [("decoder", "reconstruction term", "KL term"), ("encoder", "KL term", None)],
)
def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, module, named, not_named):
    def hook(epoch, step):
        if step == 7:  # first step of epoch 2: poison a layer; the next step fails
            with torch.no_grad():
                getattr(train_vae.vae, module)[0].weight.fill_(float("nan"))

    class Capture:  # the VAE is built inside train(); grab it from the hook's frame
        vae = None

    train_vae = Capture()
    original_build = build_vae

    def capture_build(config, data_dim):
        train_vae.vae = original_build(config, data_dim)
        return train_vae.vae

    import probgen.vae.train as train_module

    train_module.build_vae, restore = capture_build, train_module.build_vae
    try:
        with pytest.raises(TrainingDiverged, match="epoch 2, step 8") as info:
            _run(tmp_path, step_hook=hook)
    finally:
        train_module.build_vae = restore
    message = str(info.value)
    assert named in message and "(epoch 1) is kept" in message
    if not_named:
        assert not_named not in message
    saved = load_checkpoint(tmp_path / FILENAME)
    assert saved["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in saved["model"].values())


def test_resume_without_checkpoint_says_so(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint to resume from"):
        _run(tmp_path, resume=True)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_checkpoint_is_reported_and_not_overwritten(tmp_path):
    path = tmp_path / FILENAME
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        _run(tmp_path, resume=True)
    assert path.read_bytes() == b"not a checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILENAME]


def test_resume_with_changed_settings_is_refused(tmp_path):
    _run(tmp_path, dataclasses.replace(TINY, epochs=1))
    with pytest.raises(ValueError, match=r"lr=0.01 \(checkpoint: 0.001\)"):
        _run(tmp_path, dataclasses.replace(TINY, lr=0.01), resume=True)
    with pytest.raises(ValueError, match=r"hidden=\[32\]"):
        resume_config(TINY.to_dict(), {"hidden": [32], "epochs": 5})
    assert resume_config(TINY.to_dict(), {"epochs": 9, "lr": None}).epochs == 9


def test_data_outside_support_fails_before_training(tmp_path):
    config = dataclasses.replace(TINY, likelihood="bernoulli", pixels="counts")
    with pytest.raises(ValueError, match="outside the support of the bernoulli likelihood"):
        _run(tmp_path, config)
    assert not (tmp_path / FILENAME).exists()


@pytest.mark.parametrize(
    ("field", "value", "listed"),
    [
        ("likelihood", "poisson", "'binomial'"),
        ("elbo", "tracegraph", "'meanfield'"),
        ("schedule", "cosine", "'cyclical'"),
        ("engine", "jit", "'svi'"),
    ],
)
def test_unknown_names_list_the_valid_ones(field, value, listed):
    with pytest.raises(ValueError, match=f"unknown {field} '{value}'; valid names: .*{listed}"):
        dataclasses.replace(TINY, **{field: value})


def test_evaluation_ignores_free_bits_and_keeps_the_training_rng():
    x = load_digits_split("counts").test_x
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = build_vae(dataclasses.replace(TINY, free_bits=5.0), 64)
    state = torch.get_rng_state()
    with_floor = evaluate(vae, x, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    vae.free_bits = None
    assert evaluate(vae, x, seed=3) == with_floor
    assert evaluate(vae, x, seed=4) != with_floor


def test_resume_restores_pyro_optim_state_on_the_svi_engine(tmp_path):
    config = dataclasses.replace(TINY, engine="svi", elbo="trace")
    full = _run(tmp_path / "full", config)
    _run(tmp_path / "split", dataclasses.replace(config, epochs=1))
    _assert_same_run(_run(tmp_path / "split", config, resume=True), full)
