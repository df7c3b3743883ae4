r"""Compiled CPU kernel behind :func:`probgen.kl.normal.fused_normal_kl`: one pass over memory.

The C source, ``_cpu_normal.c`` next to this module, is compiled on first use for this machine
(:mod:`probgen._native`). Each element's four parameters are read once and its KL written once, by
a loop the compiler vectorizes: ``log r`` is evaluated inline as in fdlibm (``r = 2^k m``,
``c = f − log1p(f)`` by a polynomial in ``s = f/(2 + f)``), so that

.. math:: KL = \bigl[(d - f) - k\log 2 + c\bigr] + \tfrac12 d^2 + \tfrac12 t^2

is a sum without cancellation; for ``k = 0``, ``f = d`` and the bracket is ``c`` itself
(no series switch). float32 is computed in float32 arithmetic, float64 in double. The work is split
over ``torch.get_num_threads()`` threads from 2¹⁶ elements per thread on.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path

import torch

from probgen._native import load_library

__all__ = ["load"]

_SOURCE = Path(__file__).with_suffix(".c")


def load() -> Callable[..., None] | None:
    """The kernel's launcher ``launch(loc_p, scale_p, loc_q, scale_q, out)``, or ``None`` where it
    cannot be built (no C compiler, ``PROBGEN_NATIVE=0``: see :func:`probgen._native.status`).

    The launcher takes contiguous CPU tensors of one shape and dtype (float32 or float64) and
    does not check them: :func:`~probgen.kl.normal.fused_normal_kl` does.
    """
    library = load_library(_SOURCE)
    if library is None:
        return None
    kernels = {}
    for dtype, name in ((torch.float32, "f32"), (torch.float64, "f64")):
        fn = getattr(library, f"probgen_normal_kl_{name}")
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int64, ctypes.c_int]
        kernels[dtype] = fn

    def launch(
        loc_p: torch.Tensor,
        scale_p: torch.Tensor,
        loc_q: torch.Tensor,
        scale_q: torch.Tensor,
        out: torch.Tensor,
    ) -> None:
        kernels[out.dtype](
            loc_p.data_ptr(),
            scale_p.data_ptr(),
            loc_q.data_ptr(),
            scale_q.data_ptr(),
            out.data_ptr(),
            out.numel(),
            torch.get_num_threads(),
        )

    return launch
