"""probgen.kl.stable against mpmath at 120 digits."""

import mpmath as mp
import pytest
import torch

from probgen.kl.stable import expm1_minus_x, one_plus_x_log1p_minus_x, x_minus_log1p

mp.mp.dps = 120

POINTS = [
    -0.9999,
    -0.5,
    -0.3,
    -0.2,
    -1e-3,
    -1e-8,
    -1e-15,
    1e-15,
    1e-8,
    1e-3,
    0.2,
    0.3,
    0.49,
    0.51,
    1.0,
    10.0,
    1e10,
]
# Relative error allowed: a few ulps of each dtype.
ULPS = {torch.float64: 16 * 2.2e-16, torch.float32: 16 * 1.2e-7}


def _ref(name, x):
    x = mp.mpf(x)
    if name == "g":
        return x - mp.log1p(x)
    if name == "e":
        return mp.expm1(x) - x
    return (1 + x) * mp.log1p(x) - x


FUNCS = {"g": x_minus_log1p, "e": expm1_minus_x, "h": one_plus_x_log1p_minus_x}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", ["g", "e", "h"])
def test_matches_mpmath(name, dtype):
    points = [x for x in POINTS if not (name == "e" and x > 80)]
    if dtype == torch.float32:
        # Below ~1e-19 the true value x²/2 underflows float32.
        points = [x for x in points if abs(x) > 1e-18]
    x = torch.tensor(points, dtype=dtype)
    got = FUNCS[name](x)
    for xi, gi in zip(x.tolist(), got.tolist(), strict=True):
        ref = _ref(name, xi)  # at the value x actually holds in this dtype
        assert abs(gi - float(ref)) <= ULPS[dtype] * float(ref), (name, xi, gi, float(ref))


@pytest.mark.parametrize("name", ["g", "e", "h"])
def test_zero_at_zero_and_nonnegative(name):
    x = torch.linspace(-0.99, 3.0, 10001, dtype=torch.float32)
    got = FUNCS[name](x)
    assert (got >= 0).all()
    assert FUNCS[name](torch.zeros(3)).eq(0).all()


def test_h_at_minus_one_is_one():
    assert one_plus_x_log1p_minus_x(torch.tensor([-1.0], dtype=torch.float64)).item() == 1.0


@pytest.mark.parametrize("name", ["g", "e", "h"])
def test_gradient_matches_derivative(name):
    # g' = x/(1+x), e' = expm1(y), h' = log1p(x): checked where both branches are used.
    x = torch.tensor([-0.4, -1e-3, 1e-6, 0.1, 0.3, 2.0], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(FUNCS[name](x).sum(), x)
    expected = {"g": x / (1 + x), "e": torch.expm1(x), "h": torch.log1p(x)}[name].detach()
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-15)
