"""KL(Normal ‖ Normal), LogNormal, HalfNormal: accuracy against mpmath, zeros, Monte Carlo,
shapes, gradients, the fused path and dispatch."""

from __future__ import annotations

import subprocess
import sys

import mpmath
import pytest
import torch
from kl_targets import SCALES, near_equal_loc_scale
from kl_targets import normal_kl_mpmath as reference
from torch.distributions import HalfNormal, LogNormal, Normal, kl_divergence

import probgen
from probgen.kl import normal as kl_normal
from probgen.kl.registry import lookup, torch_kl_only

DTYPES = (torch.float32, torch.float64)


def assert_accurate(value: torch.Tensor, refs: list, dtype: torch.dtype) -> None:
    """float64: relative error ≤ 1e-10; float32: ≤ 1e-4, or absolute ≤ 1e-7 below KL 1e-3."""
    for v, ref in zip(value.reshape(-1).tolist(), refs, strict=True):
        assert v >= 0
        err = abs(mpmath.mpf(v) - ref)
        if dtype == torch.float64:
            assert err <= 1e-10 * ref, (v, ref)
        else:
            assert err <= max(1e-4 * ref, 1e-7 if ref < 1e-3 else 0), (v, ref)


def hard_cases(dtype: torch.dtype) -> list[tuple[float, float, float, float]]:
    """Near-equal parameters (scale, location or both) at extreme scales, and far-apart ones."""
    lo, hi = SCALES[dtype][0], SCALES[dtype][-1]
    return [*near_equal_loc_scale(dtype), (hi, lo, -hi, lo)]


def _tensors(cases, dtype):
    return [torch.tensor(col, dtype=dtype) for col in zip(*cases, strict=True)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_normal_matches_mpmath_at_hard_cases(dtype):
    cases = hard_cases(dtype)
    lp, sp, lq, sq = _tensors(cases, dtype)
    refs = [reference(*(float(x[i]) for x in (lp, sp, lq, sq))) for i in range(len(cases))]
    p, q = Normal(lp, sp), Normal(lq, sq)
    assert_accurate(kl_divergence(p, q), refs, dtype)
    assert_accurate(kl_normal.normal_kl(lp, sp, lq, sq), refs, dtype)
    assert_accurate(kl_normal.fused_normal_kl(lp, sp, lq, sq), refs, dtype)
    assert_accurate(kl_divergence(LogNormal(lp, sp), LogNormal(lq, sq)), refs, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_halfnormal_matches_mpmath(dtype):
    cases = hard_cases(dtype)
    _, sp, _, sq = _tensors(cases, dtype)
    refs = [reference(0.0, float(a), 0.0, float(b)) for a, b in zip(sp, sq, strict=True)]
    assert_accurate(kl_divergence(HalfNormal(sp), HalfNormal(sq)), refs, dtype)


def test_float64_beats_torch_below_1e8_location_difference():
    # torch adds ½t² = 5e-17 to 1 and subtracts 1 again, returning exactly 0.
    f64 = torch.float64
    p = Normal(torch.tensor(0.0, dtype=f64), torch.tensor(1.0, dtype=f64))
    q = Normal(torch.tensor(1e-8, dtype=f64), torch.tensor(1.0, dtype=f64))
    assert_accurate(kl_divergence(p, q), [reference(0.0, 1.0, 1e-8, 1.0)], f64)
    with torch_kl_only():
        assert float(kl_divergence(p, q)) == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_of_a_distribution_with_itself_is_zero(dtype):
    gen = torch.Generator().manual_seed(0)
    loc = torch.randn(1000, generator=gen, dtype=dtype) * 1e3
    scale = torch.rand(1000, generator=gen, dtype=dtype) * 10 + 1e-6
    p = Normal(loc, scale)
    assert torch.equal(kl_divergence(p, p), torch.zeros_like(loc))
    assert torch.equal(kl_normal.fused_normal_kl(loc, scale, loc, scale), torch.zeros_like(loc))
    assert torch.equal(kl_divergence(HalfNormal(scale), HalfNormal(scale)), torch.zeros_like(loc))


@pytest.mark.parametrize("dtype", DTYPES)
def test_never_negative_near_equal(dtype):
    gen = torch.Generator().manual_seed(1)
    n = 20_000
    scale = torch.exp(torch.randn(n, generator=gen, dtype=dtype) * 3)
    loc = torch.randn(n, generator=gen, dtype=dtype)
    ulps = torch.randint(-3, 4, (2, n), generator=gen)
    eps = torch.finfo(dtype).eps
    scale_q = scale * (1 + ulps[0] * eps)
    loc_q = loc + ulps[1] * eps * loc.abs()
    for value in (
        kl_divergence(Normal(loc, scale), Normal(loc_q, scale_q)),
        kl_divergence(Normal(loc_q, scale_q), Normal(loc, scale)),
        kl_normal.fused_normal_kl(loc, scale, loc_q, scale_q),
    ):
        assert bool((value >= 0).all()) and not bool(value.isnan().any())


@pytest.mark.parametrize(
    "p, q",
    [
        (Normal(0.3, 0.8), Normal(-0.2, 1.3)),
        (LogNormal(0.3, 0.8), LogNormal(-0.2, 1.3)),
        (HalfNormal(0.8), HalfNormal(1.3)),
    ],
    ids=["normal", "lognormal", "halfnormal"],
)
def test_agrees_with_monte_carlo(p, q):
    est = probgen.mc_kl(p, q, num_samples=20_000, seed=0)
    exact = kl_divergence(p, q)
    assert abs(float(est.value) - float(exact)) <= 5 * float(est.stderr)


def test_broadcast_shapes():
    p = Normal(torch.zeros(3, 1), torch.ones(3, 1))
    q = Normal(torch.randn(4), torch.rand(4) + 0.5)
    expected = kl_normal.normal_kl(p.loc, p.scale, q.loc, q.scale)
    assert kl_divergence(p, q).shape == (3, 4)
    assert probgen.kl_divergence(p, q).shape == (3, 4)
    assert torch.equal(kl_normal.fused_normal_kl(p.loc, p.scale, q.loc, q.scale), expected)
    # Only the scales broadcast against each other in the scale part.
    assert kl_divergence(HalfNormal(torch.ones(2, 1)), HalfNormal(torch.ones(5))).shape == (2, 5)


@pytest.fixture
def without_compiled_kernel(monkeypatch):
    """The PyTorch paths of the CPU, as where no C compiler is found."""
    monkeypatch.setattr(kl_normal, "_cpu_kernels", lambda: None)


@pytest.mark.parametrize("dtype", DTYPES)
def test_blocked_fused_path_equals_eager(dtype, monkeypatch, without_compiled_kernel):
    monkeypatch.setattr(kl_normal, "_BLOCK", 65536)
    n = 3 * 65536 + 17  # several blocks and a ragged tail
    gen = torch.Generator().manual_seed(2)
    lp, lq = torch.randn(2, n, generator=gen, dtype=dtype)
    sp, sq = torch.rand(2, n, generator=gen, dtype=dtype) + 0.5
    sq[:100] = sp[:100] * (1 + 1e-9)  # the float64 series, in the first block only
    out = torch.empty(n, dtype=dtype)
    result = kl_normal.fused_normal_kl(lp, sp, lq, sq, out=out)
    assert result is out
    torch.testing.assert_close(result, kl_normal.normal_kl(lp, sp, lq, sq), rtol=0, atol=0)
    # The registered function takes the blocked path for large inputs without autograd.
    torch.testing.assert_close(kl_divergence(Normal(lp, sp), Normal(lq, sq)), result)


@pytest.mark.parametrize("dtype", DTYPES)
def test_blocked_autograd_path_matches_eager_gradients(dtype, monkeypatch, without_compiled_kernel):
    monkeypatch.setattr(kl_normal, "_BLOCK", 65536)
    n = 2 * 65536 + 5
    gen = torch.Generator().manual_seed(4)
    base = [
        torch.randn(n, generator=gen, dtype=dtype),
        torch.rand(n, generator=gen, dtype=dtype) + 0.5,
        torch.randn(n, generator=gen, dtype=dtype),
        torch.rand(n, generator=gen, dtype=dtype) + 0.5,
    ]
    base[3][:10] = base[1][:10]  # equal scales: the float64 series in the forward
    weight = torch.randn(n, generator=gen, dtype=dtype)
    blocked = [x.clone().requires_grad_() for x in base]
    eager = [x.clone().requires_grad_() for x in base]
    value = kl_divergence(Normal(blocked[0], blocked[1]), Normal(blocked[2], blocked[3]))
    assert type(value.grad_fn).__name__ == "_NormalKLBackward"
    (value * weight).sum().backward()
    expected = kl_normal.normal_kl(*eager)
    (expected * weight).sum().backward()
    torch.testing.assert_close(value, expected, rtol=0, atol=0)
    for x, y in zip(blocked, eager, strict=True):
        torch.testing.assert_close(x.grad, y.grad)
    # Only the parameters that require gradients get them.
    only_scale = [x.clone().requires_grad_(i == 1) for i, x in enumerate(base)]
    kl_divergence(Normal(*only_scale[:2]), Normal(*only_scale[2:])).sum().backward()
    assert only_scale[1].grad is not None and only_scale[0].grad is None


def test_fused_rejects_bad_input():
    ones = torch.ones(3)
    with pytest.raises(ValueError, match=r"scale_q must be > 0.*-1\.0.*\(1,\)"):
        kl_normal.fused_normal_kl(ones, ones, ones, torch.tensor([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="loc_p must be not NaN"):
        kl_normal.fused_normal_kl(torch.tensor([0.0, 0.0, float("nan")]), ones, ones, ones)
    with pytest.raises(ValueError, match="out must be"):
        kl_normal.fused_normal_kl(ones, ones, ones, ones, out=torch.empty(4))
    with pytest.raises(ValueError, match="out must not share memory with scale_q"):
        scale_q = torch.ones(3)
        kl_normal.fused_normal_kl(ones.clone(), ones, ones.clone(), scale_q, out=scale_q)
    with pytest.raises(RuntimeError, match="normal_kl"):
        kl_normal.fused_normal_kl(ones.requires_grad_(), ones, ones, ones)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_finite_and_correct(dtype):
    params = [
        torch.tensor([0.3, 1.0, -2.0], dtype=dtype),
        torch.tensor([0.8, 1.0, 1e-3], dtype=dtype),
        torch.tensor([-0.2, 1.0, 5.0], dtype=dtype),
        torch.tensor([1.3, 1.0 + 1e-9, 1e3], dtype=dtype),  # the second is the series (float64)
    ]
    for x in params:
        x.requires_grad_()
    kl_divergence(Normal(params[0], params[1]), Normal(params[2], params[3])).sum().backward()
    for x in params:
        assert bool(torch.isfinite(x.grad).all())
    lp, sp, lq, sq = params
    t = (lp - lq) / sq
    # Analytic gradients: ∂/∂μ_p = t/σ_q, ∂/∂σ_p = σ_p/σ_q² − 1/σ_p, ∂/∂σ_q = (1 − r² − t²)/σ_q.
    with torch.no_grad():
        r = sp / sq
        torch.testing.assert_close(lp.grad, t / sq)
        torch.testing.assert_close(sp.grad, r / sq - 1 / sp)
        torch.testing.assert_close(sq.grad, (1 - r * r - t * t) / sq)


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(3)
    params = [
        torch.randn(4, generator=gen, dtype=torch.float64),
        torch.rand(4, generator=gen, dtype=torch.float64) + 0.5,
        torch.randn(4, generator=gen, dtype=torch.float64),
        torch.rand(4, generator=gen, dtype=torch.float64) + 0.5,
    ]
    params = [x.requires_grad_() for x in params]
    assert torch.autograd.gradcheck(kl_normal.normal_kl, params)


def test_torch_kl_divergence_dispatches_to_probgen():
    pairs = {
        (Normal, Normal): kl_normal._kl_normal_normal,
        (LogNormal, LogNormal): kl_normal._kl_lognormal_lognormal,
        (HalfNormal, HalfNormal): kl_normal._kl_halfnormal_halfnormal,
    }
    examples = {
        Normal: Normal(0.0, 1.0),
        LogNormal: LogNormal(0.0, 1.0),
        HalfNormal: HalfNormal(1.0),
    }
    for (tp, tq), fn in pairs.items():
        assert lookup(examples[tp], examples[tq]) is fn
        assert probgen.kl.probgen_pairs()[tp, tq] is fn


def test_off_the_cpu_autograd_is_the_eager_formula_and_no_grad_the_fused_kernel():
    """The blocked autograd Function is for CPU caches; other devices (here the meta device,
    which runs no arithmetic) get autograd through normal_kl, and without gradients
    fused_normal_kl's single pass."""
    n = 4 * (1 << 20)
    lp, sp, lq, sq = (torch.empty(n, device="meta") for _ in range(4))
    lp.requires_grad_()
    on_meta = kl_divergence(
        Normal(lp, sp, validate_args=False), Normal(lq, sq, validate_args=False)
    )
    assert on_meta.device.type == "meta" and on_meta.shape == (n,)
    assert "_NormalKL" not in type(on_meta.grad_fn).__name__
    cpu = [torch.rand(n) + 0.5 for _ in range(4)]
    cpu[0].requires_grad_()
    on_cpu = kl_divergence(Normal(cpu[0], cpu[1]), Normal(cpu[2], cpu[3]))
    assert "_NormalKL" in type(on_cpu.grad_fn).__name__
    with torch.no_grad():
        no_grad = kl_divergence(
            Normal(lp, sp, validate_args=False), Normal(lq, sq, validate_args=False)
        )
    assert no_grad.device.type == "meta" and no_grad.grad_fn is None


@pytest.mark.parametrize("compiled", [True, False])
def test_cpu_tensors_never_reach_triton(monkeypatch, compiled):
    """On the CPU fused_normal_kl keeps its CPU paths even where triton is importable."""

    def fail():
        raise AssertionError("the Triton path was taken for CPU tensors")

    monkeypatch.setattr(kl_normal, "_triton_launch", fail)
    if compiled and kl_normal._cpu_kernels() is None:
        pytest.skip("no compiled kernel (no C compiler)")
    if not compiled:
        monkeypatch.setattr(kl_normal, "_cpu_kernels", lambda: None)
    g = torch.Generator().manual_seed(0)
    lp, lq = torch.randn(2, 400, generator=g)
    sp, sq = torch.rand(2, 400, generator=g) + 0.1
    value = kl_normal.fused_normal_kl(lp, sp, lq, sq)
    if compiled:  # its own rounding: within 2e-6 relative (tests/kl/test_normal_cpu_kernel.py)
        exact = kl_normal.normal_kl(lp.double(), sp.double(), lq.double(), sq.double())
        torch.testing.assert_close(value.double(), exact, rtol=2e-6, atol=0)
    else:
        assert torch.equal(value, kl_normal.normal_kl(lp, sp, lq, sq))


def test_blocks_only_on_the_cpu(monkeypatch, without_compiled_kernel):
    """Off the CPU (here the meta device) the in-place pass runs once over the whole tensor;
    on the CPU, without the compiled kernel, in blocks."""
    calls = []
    fused_into = kl_normal._fused_into

    def counting(*args, **kwargs):
        calls.append(kwargs["out"].numel())
        return fused_into(*args, **kwargs)

    monkeypatch.setattr(kl_normal, "_fused_into", counting)
    n = 2 * kl_normal._BLOCK + 3
    for device, expected in (("meta", [n]), ("cpu", [kl_normal._BLOCK] * 2 + [3])):
        calls.clear()
        x = torch.ones(n, device=device)
        kl_normal.fused_normal_kl(x, x, x, x, validate=False)
        assert calls == expected, device


def test_import_probgen_does_not_import_triton():
    code = "import sys, probgen, probgen.kl.normal; print('triton' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
