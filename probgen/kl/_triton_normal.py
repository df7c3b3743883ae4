r"""Triton kernel behind :func:`probgen.kl.normal.fused_normal_kl` on CUDA: one pass, no sync.

Imported by :mod:`probgen.kl.normal` only for CUDA tensors and only where ``triton`` (an
optional dependency) is installed. Each program reads ``BLOCK`` consecutive elements of
μ_p, σ_p, μ_q, σ_q once and writes their KL once: 5 × 4 bytes per element in float32, the
least an elementwise kernel moves, in one launch whatever the size (two where it is not a
multiple of 16).

The formula and the order of operations are those of :mod:`probgen.kl.normal`: with
r = σ_p/σ_q, d = r − 1 and t = (μ_p − μ_q)/σ_q,

.. math:: KL = \underbrace{(d - \log r) + \tfrac12 d^2}_{G} + \tfrac12 t^2 .

* float32: that formula, no series.
* float64: the series G = e²(1 − e/3 + e²/4 − e³/5) in e = (σ_p − σ_q)/σ_q replaces G on the
  elements where G < 1e-9, chosen per element by ``tl.where`` (both are computed; no branch
  and no host synchronisation, where the eager path reduces and patches).

Rounding on the GPU: Triton's ``/`` is the approximate ``div.full.f32`` in float32, so the
float32 quotients use ``div_rn`` (IEEE, as torch); the logarithm is libdevice's ``__nv_logf`` /
``__nv_log`` (within 1 ulp: a faithful ``log r`` cannot exceed ``r − 1``, which keeps d − log r
≥ 0), not ``tl.log``, which may be lowered to an approximation. Triton's CPU interpreter
(``TRITON_INTERPRET=1``, used by the tests on CPU tensors) has no libdevice; there numpy's
float64 log, rounded to the dtype, stands in (numpy's float32 log is not faithful).
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from probgen.kl.normal import _BIG_G_COEFFS, _G_SWITCH

__all__ = ["launch"]

_C0, _C1, _C2, _C3 = (tl.constexpr(c) for c in _BIG_G_COEFFS)
_SWITCH_F64 = tl.constexpr(_G_SWITCH[torch.float64])
# (BLOCK, num_warps) per dtype. Compiled for sm_90 this takes 61 registers a thread in float32
# (8 elements: two 16-byte loads of each input) and 76 in float64 (4 elements), so that 1024
# and 768 threads fit on an SM with about 100 KB of loads in flight, well above the ~40 KB that
# HBM asks (4.8 TB/s × ~1 µs latency / 132 SMs).
_CONFIG = {torch.float32: (1024, 4), torch.float64: (1024, 8)}


@triton.jit
def _normal_kl_kernel(
    lp_ptr,
    sp_ptr,
    lq_ptr,
    sq_ptr,
    out_ptr,
    n,
    BLOCK: tl.constexpr,
    IS_F64: tl.constexpr,
    LIBDEVICE: tl.constexpr,
):
    # int64 offsets: no overflow past 2³¹ elements.
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    lp = tl.load(lp_ptr + offsets, mask=mask, other=0.0)
    sp = tl.load(sp_ptr + offsets, mask=mask, other=1.0)
    lq = tl.load(lq_ptr + offsets, mask=mask, other=0.0)
    sq = tl.load(sq_ptr + offsets, mask=mask, other=1.0)
    if IS_F64:  # `/` is div.rn.f64
        r = sp / sq
        t = (lp - lq) / sq
    else:
        r = tl.math.div_rn(sp, sq)
        t = tl.math.div_rn(lp - lq, sq)
    if LIBDEVICE:
        log_r = libdevice.log(r)
    else:  # the interpreter: numpy's float32 log is off by up to 4 ulp, its float64 one is not
        log_r = tl.log(r.to(tl.float64)).to(r.dtype)
    d = r - 1.0
    big_g = (d - log_r) + 0.5 * d * d
    if IS_F64:
        e = (sp - sq) / sq
        series = e * e * (((e * _C3 + _C2) * e + _C1) * e + _C0)
        big_g = tl.where(big_g < _SWITCH_F64, series, big_g)
    tl.store(out_ptr + offsets, big_g + 0.5 * t * t, mask=mask)


# Under TRITON_INTERPRET=1 at import, triton.jit gives an interpreted function instead.
_INTERPRETED = not isinstance(_normal_kl_kernel, triton.runtime.JITFunction)


def launch(
    lp: torch.Tensor,
    sp: torch.Tensor,
    lq: torch.Tensor,
    sq: torch.Tensor,
    out: torch.Tensor,
    *,
    block: int | None = None,
    num_warps: int | None = None,
) -> None:
    """KL(N(lp, sp²) ‖ N(lq, sq²)) elementwise into ``out``; no validation of values.

    One launch (two where the size is not a multiple of 16), no host synchronisation.

    Args:
        lp, sp, lq, sq, out: contiguous tensors of one shape, one dtype (float32 or float64)
            and one device (CUDA; CPU tensors only under Triton's interpreter).
        block, num_warps: override the launch configuration (for tuning; a power of two).

    Raises:
        ValueError: if the tensors differ in shape, dtype or device, are not contiguous, or
            the dtype is not float32 or float64.
    """
    tensors = (lp, sp, lq, sq, out)
    if out.dtype not in _CONFIG:
        raise ValueError(f"dtype must be float32 or float64, got {out.dtype}")
    if any(
        x.shape != out.shape or x.dtype != out.dtype or x.device != out.device for x in tensors
    ) or not all(x.is_contiguous() for x in tensors):
        raise ValueError(
            "the Triton kernel needs contiguous tensors of one shape, dtype and device, got "
            + ", ".join(f"{tuple(x.shape)} {x.dtype} {x.device}" for x in tensors)
        )
    n = out.numel()
    default_block, default_warps = _CONFIG[out.dtype]
    block, num_warps = block or default_block, num_warps or default_warps
    # Triton vectorises the masked loads only when it knows n % 16 == 0: the bulk gets such a
    # size, and the last n % 16 elements (if any) a second, one-program launch.
    bulk = n - n % 16
    if bulk == n:
        parts = [(tensors, n)]
    else:
        flat = [x.view(-1) for x in tensors]
        parts = [([x[:bulk] for x in flat], bulk), ([x[bulk:] for x in flat], n - bulk)]
    on_device = torch.cuda.device(out.device) if out.is_cuda else contextlib.nullcontext()
    with on_device:
        for part, size in parts:
            if size:
                _normal_kl_kernel[(triton.cdiv(size, block),)](
                    *part,
                    size,
                    BLOCK=block,
                    IS_F64=out.dtype == torch.float64,
                    LIBDEVICE=not _INTERPRETED,
                    num_warps=num_warps,
                )
