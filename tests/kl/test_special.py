"""Stable log-gamma/digamma differences against mpmath (independent textbook formulas)."""

from __future__ import annotations

import mpmath as mp
import pytest
import torch

from probgen.kl import special

RTOL = {torch.float64: 1e-10, torch.float32: 1e-4}
SCALES = {
    torch.float64: [1e-30, 1e-6, 0.3, 1.0, 4.9, 7.9, 8.0, 30.0, 1e3, 1e6, 1e30],
    torch.float32: [1e-6, 0.3, 1.0, 4.9, 5.0, 30.0, 1e3, 1e6],
}
STEPS = [0.0, 1e-12, -1e-9, 1e-6, -1e-3, 0.3, -0.3, -0.9, 3.0, 1e3, -0.999999]


def _phi(z):
    return mp.loggamma(z) - (z - mp.mpf(1) / 2) * mp.log(z) + z - mp.log(2 * mp.pi) / 2


REFERENCES = {
    "binet_bregman": lambda a, b: (
        _phi(b) - _phi(a) - (mp.digamma(a) - mp.log(a) + 1 / (2 * a)) * (b - a)
    ),
    "lgamma_bregman": lambda a, b: mp.loggamma(b) - mp.loggamma(a) - (b - a) * mp.digamma(a),
    "gamma_shape_kl": lambda a, b: (
        (a - b) * mp.digamma(a) - mp.loggamma(a) + mp.loggamma(b) - b * mp.log(b / a) + b - a
    ),
    "lgamma_diff": lambda a, b: mp.loggamma(b) - mp.loggamma(a),
    "digamma_diff": lambda a, b: mp.digamma(b) - mp.digamma(a),
}
# Bregman divergences are ≥ 0 and small: relative error. Plain differences: relative to the
# size of the larger term where the difference itself cancels to 0.
BREGMAN = {"binet_bregman", "lgamma_bregman", "gamma_shape_kl"}


def _cases(dtype):
    for x in SCALES[dtype]:
        for r in STEPS:
            xt = torch.tensor(x, dtype=dtype)
            xp = xt * (1 + r)
            if float(xp) > 0:
                yield xt, xp


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_against_mpmath(name, dtype):
    fn = getattr(special, name)
    cases = list(_cases(dtype))
    x = torch.stack([c[0] for c in cases])
    xp = torch.stack([c[1] for c in cases])
    values = fn(x, xp)
    assert values.dtype == dtype and values.shape == x.shape
    with mp.workdps(160):
        for xv, xpv, v in zip(x.tolist(), xp.tolist(), values.tolist(), strict=True):
            ref = REFERENCES[name](mp.mpf(xv), mp.mpf(xpv))
            if name in BREGMAN:
                assert v >= 0
                tol = RTOL[dtype] * abs(ref)
                if dtype == torch.float32 and name == "binet_bregman":
                    # D_φ is at most a third of the KL it enters, t²/(12x) against t²/4.
                    tol = RTOL[dtype] * max(
                        abs(ref), abs(REFERENCES["gamma_shape_kl"](mp.mpf(xv), mp.mpf(xpv)))
                    )
            else:
                tol = RTOL[dtype] * max(abs(ref), 1e-300)
            assert abs(v - ref) <= tol, (name, xv, xpv, v, float(ref))


@pytest.mark.parametrize("name", sorted(BREGMAN))
def test_zero_at_equal_arguments_and_finite_gradients(name):
    fn = getattr(special, name)
    x = torch.tensor([1e-3, 0.5, 3.0, 7.0, 40.0, 1e5], dtype=torch.float64, requires_grad=True)
    assert torch.equal(fn(x, x.detach()), torch.zeros(6, dtype=torch.float64))
    fn(x, x.detach() * 1.7).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_broadcasting():
    out = special.gamma_shape_kl(torch.rand(3, 1) + 0.5, torch.rand(4) * 20 + 0.5)
    assert out.shape == (3, 4)
    assert (out >= 0).all()


def test_gather_selects_batch_elements_with_event_dimensions_and_scalar_batches():
    from probgen.kl.special import gather

    mask = torch.tensor([[True, False, True], [False, False, True]])
    x = torch.arange(6.0).reshape(2, 3)
    conc = torch.arange(6.0).reshape(3, 2)  # batch (3,) broadcast to (2, 3), event (2,)
    (gx,), (gc,) = gather(mask, x), gather(mask, conc, event_dims=1)
    assert gx.tolist() == [0.0, 2.0, 5.0]
    assert gc.tolist() == [[0.0, 1.0], [4.0, 5.0], [4.0, 5.0]]
    (one,) = gather(torch.tensor(True), torch.tensor([7.0, 8.0]), event_dims=1)
    assert one.tolist() == [[7.0, 8.0]]
    (none,) = gather(torch.tensor(False), torch.tensor(3.0))
    assert none.shape == (0,)
