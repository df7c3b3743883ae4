"""probgen.kl.stable against mpmath at 120 digits."""

import mpmath as mp
import pytest
import torch

from probgen.kl.stable import (
    expm1_minus_x,
    one_plus_x_log1p_minus_x,
    x_minus_log1p,
    x_minus_log1p_dense,
)

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


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dense_g_keeps_a_few_ulps_from_tiny_to_large_arguments(dtype):
    values = [s * 10.0**k for k in range(-30, 1) for s in (1.0, -0.7)] + [-0.999, 5.0, 30.0]
    x = torch.tensor(values, dtype=dtype)
    got = x_minus_log1p_dense(x)
    assert got.dtype == dtype
    eps = torch.finfo(dtype).eps
    tiny = torch.finfo(dtype).tiny
    for xi, gi in zip(x.tolist(), got.tolist(), strict=True):
        ref = float(_ref("g", xi))
        if ref < tiny:  # below the normal range: only ≥ 0 and the size of a subnormal
            assert 0 <= gi <= 2 * tiny
            continue
        assert abs(gi - ref) <= 4 * eps * ref, (xi, gi, ref)


def test_dense_g_matches_the_gathering_one_in_float64():
    # Both are within a few ulps of g (test above): equal to 8 ulps on a grid across the switch.
    x = torch.linspace(-0.99, 3.0, 4001, dtype=torch.float64)
    eps = torch.finfo(torch.float64).eps
    torch.testing.assert_close(x_minus_log1p_dense(x), x_minus_log1p(x), rtol=8 * eps, atol=0)
