"""The value function and the losses on logits: stable, exact where a reference exists, checked."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from probgen.gan import (
    ProbabilitiesAsLogitsWarning,
    discriminator_loss,
    generator_loss,
    log_d,
    log_one_minus_d,
    minimax_generator_loss,
    non_saturating_generator_loss,
    value_estimate,
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_terms_finite_at_extreme_logits(dtype):
    logits = torch.tensor([-1e4, -100.0, 0.0, 100.0, 1e4], dtype=dtype)
    for fn in (log_d, log_one_minus_d):
        out = fn(logits)
        assert torch.isfinite(out).all()
        assert (out <= 0).all()
    # log σ(−1e4) = −1e4 up to e^{−1e4}; log σ(1e4) = −e^{−1e4} → 0.
    assert log_d(logits)[0].item() == pytest.approx(-1e4, rel=1e-7)
    assert log_one_minus_d(logits)[-1].item() == pytest.approx(-1e4, rel=1e-7)
    assert log_d(logits)[-1].item() == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_losses_finite_at_extreme_logits(dtype):
    real = torch.tensor([1e4, -1e4, 3.0], dtype=dtype)
    fake = torch.tensor([-1e4, 1e4, -2.0, 5.0], dtype=dtype)
    v = value_estimate(real, fake)
    assert torch.isfinite(v.value) and torch.isfinite(v.stderr)
    assert torch.isfinite(discriminator_loss(real, fake))
    for loss in ("minimax", "non-saturating"):
        assert torch.isfinite(generator_loss(fake, loss))


def test_terms_match_mpmath_reference():
    mpmath = pytest.importorskip("mpmath")
    logits = torch.tensor(
        [-700.0, -30.0, -21.0, -1.5, 0.0, 1e-8, 2.5, 21.0, 40.0, 700.0], dtype=torch.float64
    )
    pairs = zip(
        logits.tolist(), log_d(logits).tolist(), log_one_minus_d(logits).tolist(), strict=True
    )
    for x, ld, l1 in pairs:
        with mpmath.workdps(400):
            sig = 1 / (1 + mpmath.exp(-mpmath.mpf(x)))
            ref_d, ref_1 = float(mpmath.log(sig)), float(mpmath.log(1 - sig))
        assert ld == pytest.approx(ref_d, rel=1e-14, abs=1e-300)
        assert l1 == pytest.approx(ref_1, rel=1e-14, abs=1e-300)


def test_value_matches_bce_and_stderr_formula():
    gen = torch.Generator().manual_seed(1)
    real = torch.randn(50, dtype=torch.float64, generator=gen) + 1.0
    fake = torch.randn(70, dtype=torch.float64, generator=gen) - 1.0
    v = value_estimate(real, fake)
    bce = F.binary_cross_entropy_with_logits
    expected = -bce(real, torch.ones_like(real)) - bce(fake, torch.zeros_like(fake))
    torch.testing.assert_close(v.value, expected)
    torch.testing.assert_close(discriminator_loss(real, fake), -v.value)
    a, b = F.logsigmoid(real), F.logsigmoid(-fake)
    se = math.sqrt(a.var().item() / 50 + b.var().item() / 70)
    assert v.stderr.item() == pytest.approx(se, rel=1e-12)
    assert (v.num_real, v.num_fake) == (50, 70)
    torch.testing.assert_close(v.real_term + v.fake_term, v.value)


def test_generator_losses():
    fake = torch.tensor([-3.0, 0.5, 2.0], dtype=torch.float64)
    torch.testing.assert_close(minimax_generator_loss(fake), F.logsigmoid(-fake).mean())
    torch.testing.assert_close(non_saturating_generator_loss(fake), -F.logsigmoid(fake).mean())
    torch.testing.assert_close(generator_loss(fake, "minimax"), minimax_generator_loss(fake))
    with pytest.raises(ValueError, match="loss must be one of"):
        generator_loss(fake, "wasserstein")


def test_minimax_gradient_saturates_non_saturating_does_not():
    # D rejects the fake confidently: logit −20. d/dℓ log(1 − σ(ℓ)) = −σ(ℓ) ≈ −2e−9.
    fake = torch.tensor([-20.0], dtype=torch.float64, requires_grad=True)
    (g_mm,) = torch.autograd.grad(minimax_generator_loss(fake), fake)
    (g_ns,) = torch.autograd.grad(non_saturating_generator_loss(fake), fake)
    assert g_mm.item() == pytest.approx(-torch.sigmoid(torch.tensor(-20.0)).item(), rel=1e-6)
    assert g_ns.item() == pytest.approx(-1.0, rel=1e-6)


def test_label_smoothing_explicit():
    real = torch.tensor([2.0, -1.0], dtype=torch.float64)
    fake = torch.tensor([-2.0, 0.3], dtype=torch.float64)
    smoothed = discriminator_loss(real, fake, label_smoothing=0.1)
    bce = F.binary_cross_entropy_with_logits
    expected = bce(real, torch.full_like(real, 0.9)) + bce(fake, torch.zeros_like(fake))
    torch.testing.assert_close(smoothed, expected)
    assert not torch.allclose(smoothed, discriminator_loss(real, fake))
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="label_smoothing"):
            discriminator_loss(real, fake, label_smoothing=bad)


def test_batched_trailing_shape():
    real = torch.randn(10, 3, dtype=torch.float64)
    fake = torch.randn(12, 3, dtype=torch.float64)
    v = value_estimate(real, fake)
    assert v.value.shape == (3,) and v.stderr.shape == (3,)
    torch.testing.assert_close(v.value[1], value_estimate(real[:, 1], fake[:, 1]).value)


def test_mismatched_shapes_name_both():
    with pytest.raises(ValueError, match=r"real_logits has shape \(8, 1\).*fake_logits has shape"):
        value_estimate(torch.randn(8, 1), torch.randn(8))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_logits_raise_naming_argument(bad):
    fake = torch.tensor([0.5, -2.0, bad, 3.0])
    with pytest.raises(ValueError, match=r"fake_logits must be finite.*index \(2,\)"):
        value_estimate(torch.tensor([1.0, 2.0]), fake)
    with pytest.raises(ValueError, match="fake_logits must be finite"):
        non_saturating_generator_loss(fake)
    with pytest.raises(ValueError, match="real_logits must be finite"):
        discriminator_loss(fake, torch.tensor([1.0, 2.0]))


def test_probabilities_warn_with_hint():
    probs = torch.sigmoid(torch.randn(16))
    with pytest.warns(ProbabilitiesAsLogitsWarning, match="sigmoid"):
        value_estimate(probs, probs)
    with pytest.warns(ProbabilitiesAsLogitsWarning, match="fake_logits"):
        minimax_generator_loss(probs)


def test_other_bad_input():
    with pytest.raises(ValueError, match=r"real_logits must be a torch\.Tensor"):
        value_estimate([1.0, 2.0], torch.randn(3))
    with pytest.raises(ValueError, match="floating-point"):
        value_estimate(torch.tensor([1, 2]), torch.randn(2))
    with pytest.raises(ValueError, match="at least 2 samples"):
        value_estimate(torch.randn(1), torch.randn(3))
    with pytest.raises(ValueError, match="sample dimension"):
        minimax_generator_loss(torch.tensor(1.5))
    with pytest.raises(ValueError, match="dtypes differ"):
        value_estimate(torch.randn(3), torch.randn(3, dtype=torch.float64))
