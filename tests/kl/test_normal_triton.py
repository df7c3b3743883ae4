"""The Triton kernel of fused_normal_kl: on CUDA where there is one, else in Triton's interpreter.

Triton is optional (not installed in CI, where this module skips). Without CUDA the kernel runs
on CPU tensors in Triton's interpreter, which needs ``TRITON_INTERPRET=1`` before triton is first
imported in the process (triton.language's own jit functions are decorated at import): it is set
here, at import, and stays set for the process; if triton was already imported without it, the
module skips.

Tolerances follow the error analysis of ``probgen/kl/normal.py``'s docstring. float64: relative
error below 1e-10. float32: relative error below 1e-5, plus, where the KL is small, the error
of G = d − log r + ½d² (d = σ_p/σ_q − 1): rounding σ_p/σ_q moves d by up to 2⁻²⁴ and G by
G′(d) ≈ 2|d| times that (plus 2⁻⁴⁸ where d itself is that small), and a logarithm within 1 ulp
adds up to 2⁻²³|d|; the bound used is 1e-5·KL + 2⁻²⁴(4|d| + 2⁻²²). Against the reference
(float64 ``normal_kl`` on the same inputs, or 60-digit mpmath) the kernel must stay within the
bound; against the same-dtype ``normal_kl``, itself within the bound, within twice the bound.
"""

from __future__ import annotations

import itertools
import os
import sys

import mpmath
import pytest
import torch

from probgen.kl import normal as kl_normal

ON_CUDA = torch.cuda.is_available()
if not ON_CUDA:
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip(
            "triton was imported without TRITON_INTERPRET=1: no interpreter in this process",
            allow_module_level=True,
        )
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton")

from probgen.kl import _triton_normal as tn  # noqa: E402  (after TRITON_INTERPRET is set)

DEVICE = torch.device("cuda" if ON_CUDA else "cpu")
DTYPES = (torch.float32, torch.float64)
REL64 = 1e-10  # float64 relative error bound


def _launch(lp, sp, lq, sq):
    out = torch.full_like(lp, float("nan"))
    tn.launch(lp, sp, lq, sq, out)
    return out


def _bound(ref64: torch.Tensor, sp: torch.Tensor, sq: torch.Tensor, dtype) -> torch.Tensor:
    """The documented error bound of a ``dtype`` result whose true value is ``ref64``."""
    if dtype == torch.float64:
        return REL64 * ref64
    d = sp.double() / sq.double() - 1
    return 1e-5 * ref64 + 2.0**-24 * (4 * d.abs() + 2.0**-22)


def _ref64(lp, sp, lq, sq) -> torch.Tensor:
    return kl_normal.normal_kl(lp.double(), sp.double(), lq.double(), sq.double())


def _random_inputs(dtype, n_each: int = 4100, seed: int = 0, device=DEVICE):
    """Four regimes of n_each elements (not a multiple of the block size), on ``device``:

    independent scales over the whole target range, moderately different scales, scales within
    1e-7 relative (the float64 series) with equal locations, and the same with locations a
    little apart; location differences from 1e-8 to 1e2 scales.
    """
    gen = torch.Generator().manual_seed(seed)
    decades = 6 if dtype == torch.float32 else 30

    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(n_each, generator=gen, dtype=torch.float64)

    def normal():
        return torch.randn(n_each, generator=gen, dtype=torch.float64)

    sq = [10 ** uniform(-decades, decades) for _ in range(4)]
    sp = [
        10 ** uniform(-decades, decades),
        sq[1] * torch.exp(0.3 * normal()),
        sq[2] * (1 + 1e-7 * uniform(-1, 1)),
        sq[3] * (1 + 1e-7 * uniform(-1, 1)),
    ]
    lp = [sq[i] * normal() * 10 ** uniform(-3, 3) for i in range(4)]
    offsets = [sq[i] * normal() * 10 ** uniform(-8, 2) for i in range(4)]
    offsets[2] = torch.zeros(n_each, dtype=torch.float64)
    lq = [lp[i] + offsets[i] for i in range(4)]
    return [torch.cat(x).to(device, dtype) for x in (lp, sp, lq, sq)]


def test_kernel_is_compiled_exactly_on_cuda():
    assert tn._INTERPRETED is not ON_CUDA


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_normal_kl_on_random_inputs(dtype):
    lp, sp, lq, sq = _random_inputs(dtype)
    out = _launch(lp, sp, lq, sq)
    assert torch.isfinite(out).all() and (out >= 0).all()
    ref64 = _ref64(lp, sp, lq, sq)
    bound = _bound(ref64, sp, sq, dtype)
    err = (out.double() - ref64).abs()
    assert (err <= bound).all(), f"worst: {float((err / bound).nan_to_num().max()):.3g} × bound"
    same_dtype = kl_normal.normal_kl(lp, sp, lq, sq)
    diff = (out.double() - same_dtype.double()).abs()
    assert (diff <= 2 * bound).all(), (
        f"worst: {float((diff / bound).nan_to_num().max()):.3g} × bound"
    )


def test_float64_series_is_selected_per_element():
    lp, sp, lq, sq = _random_inputs(torch.float64)
    out = _launch(lp, sp, lq, sq)
    ref = kl_normal.normal_kl(lp, sp, lq, sq)
    close = slice(2 * 4100, 3 * 4100)  # scales within 1e-7, equal locations: KL = G < 1e-13
    assert (ref[close] < 1e-13).all()
    assert ((out[close] - ref[close]).abs() <= 2 * REL64 * ref[close]).all()
    # The direct formula misses that bound there, so the check above sees a missing series.
    r = sp[close] / sq[close]
    direct = (r - 1) - torch.log(r) + 0.5 * (r - 1) ** 2
    assert ((direct - ref[close]).abs() > 2 * REL64 * ref[close]).any()


def _mp_reference(lp, sp, lq, sq) -> float:
    """Textbook KL(N_p ‖ N_q) in 60-digit mpmath at the exact values of the inputs."""
    with mpmath.workdps(60):
        lp, sp, lq, sq = (mpmath.mpf(float(x)) for x in (lp, sp, lq, sq))
        kl = mpmath.log(sq / sp) + (sp**2 + (lp - lq) ** 2) / (2 * sq**2) - mpmath.mpf(1) / 2
        return float(kl)


@pytest.mark.parametrize("dtype", DTYPES)
def test_hard_cases_match_mpmath(dtype):
    """Near-equal scale, location or both at extreme scales (around the float64 switch too)."""
    scales = (1e-6, 1.0, 1e6) if dtype == torch.float32 else (1e-30, 1.0, 1e30)
    cases = []
    for s, rel in itertools.product(scales, (1e-3, 1e-4, 3e-5, 1e-6, 1e-9, 1e-12)):
        cases += [
            (0.3 * s, s, 0.3 * s, s * (1 + rel)),
            (0.3 * s, s, 0.3 * s * (1 + rel), s),
            (-0.7 * s, s * (1 - rel), -0.7 * s * (1 + rel), s),
        ]
    lo, hi = scales[0], scales[-1]
    cases += [(0.0, lo, 0.0, hi), (0.0, hi, 0.0, lo), (hi, lo, -hi, lo), (1.0, 2.0, 3.0, 0.5)]
    params = [torch.tensor(col, dtype=dtype) for col in zip(*cases, strict=True)]
    ref = torch.tensor(
        [_mp_reference(*x) for x in zip(*(p.tolist() for p in params), strict=True)],
        dtype=torch.float64,
        device=DEVICE,
    )
    lp, sp, lq, sq = (p.to(DEVICE) for p in params)
    out = _launch(lp, sp, lq, sq)
    err = (out.double() - ref).abs()
    assert (err <= _bound(ref, sp, sq, dtype)).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_equal_distributions_give_exact_zero(dtype):
    lp, sp, _, _ = _random_inputs(dtype)
    assert torch.equal(_launch(lp, sp, lp, sp), torch.zeros_like(lp))


@pytest.mark.parametrize("n", [0, 1, 1023, 1025, 4097])
def test_writes_exactly_n_elements(n):
    """Masked tail: the elements past n of a larger buffer keep their value."""
    gen = torch.Generator().manual_seed(1)
    for dtype in DTYPES:
        lp, lq = torch.randn(2, n, generator=gen, dtype=dtype).to(DEVICE)
        sp, sq = (torch.rand(2, n, generator=gen, dtype=dtype) + 0.5).to(DEVICE)
        buffer = torch.full((n + 5000,), -1.0, dtype=dtype, device=DEVICE)
        tn.launch(lp, sp, lq, sq, buffer[:n])
        expected = kl_normal.normal_kl(lp, sp, lq, sq)
        bound = _bound(expected.double(), sp, sq, dtype)
        assert ((buffer[:n].double() - expected.double()).abs() <= 2 * bound).all()
        assert (buffer[n:] == -1).all()


def test_launch_rejects_what_the_kernel_cannot_read():
    x = torch.ones(6)
    with pytest.raises(ValueError, match="float32 or float64"):
        tn.launch(*(x.half() for _ in range(5)))
    with pytest.raises(ValueError, match="one shape"):
        tn.launch(x, x, x, torch.ones(5), x)
    with pytest.raises(ValueError, match="one shape"):
        tn.launch(x, x, x, x.double(), x)
    with pytest.raises(ValueError, match="contiguous"):
        tn.launch(x, x, x, torch.ones(12)[::2], x)


@pytest.mark.skipif(not ON_CUDA, reason="needs CUDA")
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_normal_kl_on_cuda_is_the_kernel_without_sync(dtype):
    lp, sp, lq, sq = _random_inputs(dtype)
    out = torch.empty_like(lp)
    kl_normal.fused_normal_kl(lp, sp, lq, sq, out=out, validate=False)  # compiles
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        kl_normal.fused_normal_kl(lp, sp, lq, sq, out=out, validate=False)
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    assert torch.equal(out, _launch(lp, sp, lq, sq))
