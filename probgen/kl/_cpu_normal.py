r"""Compiled CPU kernel behind :func:`probgen.kl.normal.fused_normal_kl`: one pass over memory.

The C source, ``_cpu_normal.c`` next to this module, is compiled on first use for this machine
(:mod:`probgen._native`). Each element's four parameters are read once and its KL written once, by
a loop the compiler vectorizes: ``log r`` is evaluated inline as in fdlibm (``r = 2^k m``,
``c = f − log1p(f)`` by a polynomial in ``s = f/(2 + f)``), so that

.. math:: KL = \bigl[(d - f) - k\log 2 + c\bigr] + \tfrac12 d^2 + \tfrac12 t^2

is a sum without cancellation; for ``k = 0``, ``f = d`` and the bracket is ``c`` itself
(no series switch). float32 is computed in float32 arithmetic, float64 in double. The backward
pass (the four gradients, any of them skipped) is one more kernel, chunked so that each input is
read from memory once. The work is split over ``torch.get_num_threads()`` threads from 2¹⁶
elements per thread on.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch

from probgen._native import load_library

__all__ = ["CpuKernels", "load"]

_SOURCE = Path(__file__).with_suffix(".c")
_NAMES = {torch.float32: "f32", torch.float64: "f64"}


class CpuKernels(NamedTuple):
    """The kernel's two entry points, for contiguous CPU tensors of one shape and dtype (float32
    or float64), unchecked (:func:`~probgen.kl.normal.fused_normal_kl` checks).

    ``forward(loc_p, scale_p, loc_q, scale_q, out)`` writes the KL into ``out``;
    ``backward(grad, params, grads)`` writes ``grad`` times the KL's gradient with respect to each
    of the four ``params`` into ``grads`` (a list of four tensors, ``None`` where not wanted).
    """

    forward: Callable[..., None]
    backward: Callable[..., None]


def _pointer(x: torch.Tensor | None) -> int | None:
    return None if x is None else x.data_ptr()


def load() -> CpuKernels | None:
    """The compiled kernel, or ``None`` where it cannot be built (no C compiler,
    ``PROBGEN_NATIVE=0``: see :func:`probgen._native.status`)."""
    library = load_library(_SOURCE)
    if library is None:
        return None
    forward_fns, backward_fns = {}, {}
    for dtype, name in _NAMES.items():
        fn = getattr(library, f"probgen_normal_kl_{name}")
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int64, ctypes.c_int]
        forward_fns[dtype] = fn
        fn = getattr(library, f"probgen_normal_kl_grad_{name}")
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p] * 9 + [ctypes.c_int64, ctypes.c_int]
        backward_fns[dtype] = fn

    def forward(
        loc_p: torch.Tensor,
        scale_p: torch.Tensor,
        loc_q: torch.Tensor,
        scale_q: torch.Tensor,
        out: torch.Tensor,
    ) -> None:
        forward_fns[out.dtype](
            loc_p.data_ptr(),
            scale_p.data_ptr(),
            loc_q.data_ptr(),
            scale_q.data_ptr(),
            out.data_ptr(),
            out.numel(),
            torch.get_num_threads(),
        )

    def backward(
        grad: torch.Tensor,
        params: Sequence[torch.Tensor],
        grads: Sequence[torch.Tensor | None],
    ) -> None:
        backward_fns[grad.dtype](
            grad.data_ptr(),
            *(x.data_ptr() for x in params),
            *(_pointer(g) for g in grads),
            grad.numel(),
            torch.get_num_threads(),
        )

    return CpuKernels(forward, backward)
