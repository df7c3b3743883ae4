r"""Closed-form KL divergences between normal distributions and their transforms.

Pairs registered here: Normal ‖ Normal, LogNormal ‖ LogNormal and HalfNormal ‖ HalfNormal (the
last two equal the KL of their base normals, since KL is invariant under a common bijection of
the sample space; for HalfNormal the folding :math:`x \mapsto |x|` is a bijection on each half
and both halves contribute equally).

With :math:`r = \sigma_p/\sigma_q`, :math:`d = r - 1` and :math:`t = (\mu_p - \mu_q)/\sigma_q`,

.. math::

    KL = \tfrac12 (r^2 - 1) - \log r + \tfrac12 t^2
       = \underbrace{d - \log(1 + d)}_{g(d) \ge 0} + \tfrac12 d^2 + \tfrac12 t^2,

a sum of non-negative terms. ``d`` is computed as ``r - 1`` (exact for ``r`` in [½, 2], by
Sterbenz's lemma) and ``log(1 + d)`` as ``log(r)``, which is then the same number, so that
``d - log r`` cancels exactly and keeps the sign of g. The only error left near ``r = 1`` is
the rounding of ``r`` itself, an absolute error of one ulp in ``d``:

* float32: the result's absolute error is below ``2·|d|·2⁻²⁴ + ulp``, far under the 1e-7
  allowed where the KL is below 1e-3, and its relative error is below 1e-5 elsewhere. No
  branch, no series: 8 elementwise operations (torch's formula takes 10).
* float64: the relative error would reach 1e-10 at ``|d| ≈ 1e-6``, so where the direct value
  is below 1e-9 (``|d| ≲ 3e-5``) the power series of G in ``d = (σ_p − σ_q)/σ_q`` (a
  difference of close numbers, exact) replaces it, on those elements only.

The location difference is taken directly. See ``docs/kl/normal.md`` for the derivation and
the measured errors.

:func:`fused_normal_kl` is the fast path (the VAE's KL), also taken by the registered function
without autograd. On the CPU a compiled C kernel (:mod:`probgen.kl._cpu_normal`, built on first
use where a C compiler exists) reads each argument once and writes the result once, evaluating
``log r`` inline so that the sum has no cancellation and needs no series; without a compiler the
flattened tensors are walked in cache-sized blocks (2²⁰ elements) with in-place operations. On
CUDA, where triton is installed, one Triton kernel (:mod:`probgen.kl._triton_normal`) makes the
single pass, with the float64 series chosen per element (no host synchronisation); elsewhere on
a GPU one in-place pass runs over the whole tensors.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch.distributions import HalfNormal, LogNormal, Normal

from probgen.kl.registry import register_kl

if TYPE_CHECKING:
    from probgen.kl._cpu_normal import CpuKernels

__all__ = ["fused_normal_kl", "normal_kl", "normal_scale_kl", "patch_where"]

# float64 only: G = g(d) + d²/2 is evaluated by a series on the elements where the direct formula
# gives G < 1e-9 (|d| ≲ 3e-5); there the direct formula, whose absolute error is ~3e-16·|d|,
# would lose more than 1e-11 of G. float32 needs no series (see the module docstring).
_G_SWITCH = {torch.float64: 1e-9}
# G(d) = d² − d³/3 + d⁴/4 − d⁵/5 + …; for |d| ≲ 3e-5 the first omitted term, d⁶/6, is below
# 1e-18 relative to d².
_BIG_G_COEFFS = (1.0, -1.0 / 3, 1.0 / 4, -1.0 / 5)
# Elements per block of the blocked paths: the six operands of a block (4 or 8 MB each) stay in
# a 32 MB last-level cache, and up to this size a single in-place pass is used.
_BLOCK = 1 << 20
# With autograd and without the compiled kernel, the custom Function (blocked forward and
# backward) from this size on.
_AUTOGRAD_BLOCKED = 1 << 16
# Dtypes of the compiled kernels (fused_normal_kl: C on the CPU, Triton on CUDA).
_KERNEL_DTYPES = (torch.float32, torch.float64)


def _series_big_g(d: torch.Tensor) -> torch.Tensor:
    """G(d) = d − log1p(d) + d²/2 for |d| ≲ 3e-5 (float64): d²·(1 − d/3 + d²/4 − d³/5)."""
    c0, c1, c2, c3 = _BIG_G_COEFFS
    return d * d * (((c3 * d + c2) * d + c1) * d + c0)


def patch_where(
    values: torch.Tensor,
    small: torch.Tensor,
    compute: Callable[..., torch.Tensor],
    *sources: torch.Tensor,
) -> torch.Tensor:
    """``values[small] = compute(*(s[small] for s in sources))`` in place; returns ``values``.

    ``sources`` broadcast to ``values``; indices are found once. Autograd allows the in-place
    write where ``values`` is the output of an operation whose backward does not need it
    (subtraction, addition, addcmul).
    """
    view = values.unsqueeze(0) if values.dim() == 0 else values
    index = small.reshape(view.shape).nonzero(as_tuple=True)
    picked = [x.expand_as(values).reshape(view.shape)[index] for x in sources]
    view.index_put_(index, compute(*picked))
    return values


def _series_from_scales(sp: torch.Tensor, sq: torch.Tensor) -> torch.Tensor:
    return _series_big_g((sp - sq) / sq)


def _patch_small(big_g: torch.Tensor, scale_p: torch.Tensor, scale_q: torch.Tensor) -> torch.Tensor:
    """Replace G by its series where G < the switch value (float64 only)."""
    switch = _G_SWITCH.get(big_g.dtype)
    if switch is None or big_g.numel() == 0 or not float(big_g.detach().min()) < switch:
        return big_g
    return patch_where(big_g, big_g < switch, _series_from_scales, scale_p, scale_q)


def _big_g(scale_p: torch.Tensor, scale_q: torch.Tensor) -> torch.Tensor:
    """G = (r − 1) − log r + ½(r − 1)², r = scale_p / scale_q; shape broadcast(scale_p, scale_q)."""
    r = scale_p / scale_q
    d = r - 1
    big_g = torch.addcmul(d - torch.log(r), d, d, value=0.5)
    return _patch_small(big_g, scale_p, scale_q)


def _check_params(**params: torch.Tensor) -> None:
    for name, value in params.items():
        if not value.numel():
            continue
        if name.startswith("scale"):
            ok_all, constraint = bool(value.amin() > 0), "> 0"
        else:
            ok_all, constraint = not bool(torch.isnan(value.amax())), "not NaN"
        if not ok_all:
            ok = value > 0 if name.startswith("scale") else ~torch.isnan(value)
            index = tuple(int(i) for i in (~ok).nonzero()[0])
            raise ValueError(
                f"{name} must be {constraint}, found {value[index].item()!r} at index {index}"
            )


def normal_scale_kl(scale_p: torch.Tensor, scale_q: torch.Tensor) -> torch.Tensor:
    r"""Batchwise KL(N(0, σ_p²) ‖ N(0, σ_q²)) = ½(r² − 1) − log r, r = σ_p/σ_q.

    Also KL(HalfNormal(σ_p) ‖ HalfNormal(σ_q)). Stable form: g(d) + d²/2 with d = r − 1 and
    g(d) = d − log(1 + d) ≥ 0; in float64 a series in d = (σ_p − σ_q)/σ_q replaces it where it
    is below 1e-9.

    Args:
        scale_p, scale_q: positive tensors of broadcastable shapes.

    Returns:
        Tensor of shape ``broadcast(scale_p.shape, scale_q.shape)``, ≥ 0.

    Reference: ``docs/kl/normal.md``.
    """
    return _big_g(scale_p, scale_q)


def normal_kl(
    loc_p: torch.Tensor, scale_p: torch.Tensor, loc_q: torch.Tensor, scale_q: torch.Tensor
) -> torch.Tensor:
    r"""Batchwise KL(N(μ_p, σ_p²) ‖ N(μ_q, σ_q²)), differentiable (autograd-traced).

    .. math:: KL = (r - 1) - \log r + \tfrac12 (r - 1)^2 + \tfrac12 t^2,
        \quad r = \sigma_p/\sigma_q,\; t = (\mu_p - \mu_q)/\sigma_q,

    a sum of non-negative terms (the scale part by a series where it is below 1e-9 in
    float64, see :func:`normal_scale_kl`).

    Args:
        loc_p, scale_p, loc_q, scale_q: tensors of broadcastable shapes, scales positive.

    Returns:
        Tensor of the broadcast shape of the four arguments.

    Reference: ``docs/kl/normal.md``.
    """
    big_g = _big_g(scale_p, scale_q)
    t = (loc_p - loc_q) / scale_q
    return torch.addcmul(big_g, t, t, value=0.5)


def _fused_into(
    lp: torch.Tensor,
    sp: torch.Tensor,
    lq: torch.Tensor,
    sq: torch.Tensor,
    out: torch.Tensor,
    tmp: torch.Tensor,
) -> None:
    """KL into ``out`` with in-place operations, ``tmp`` as scratch (both of the full shape)."""
    r = torch.div(sp, sq, out=tmp)
    torch.log(r, out=out)
    d = r.sub_(1)
    torch.sub(d, out, out=out)
    out.addcmul_(d, d, value=0.5)
    switch = _G_SWITCH.get(out.dtype)
    if switch is not None and float(out.min()) < switch:
        patch_where(out, out < switch, _series_from_scales, sp, sq)
    t = torch.sub(lp, lq, out=tmp)
    t.div_(sq)
    out.addcmul_(t, t, value=0.5)


def fused_normal_kl(
    loc_p: torch.Tensor,
    scale_p: torch.Tensor,
    loc_q: torch.Tensor,
    scale_q: torch.Tensor,
    out: torch.Tensor | None = None,
    *,
    validate: bool = True,
) -> torch.Tensor:
    r"""Batchwise KL(N(μ_p, σ_p²) ‖ N(μ_q, σ_q²)), the fast path (no autograd).

    The value of :func:`normal_kl` (within a few units in the last place), written into ``out``.
    On the CPU, for contiguous arguments of one shape and dtype (float32 or float64), a compiled
    C kernel makes one pass: four reads and one write per element, split over
    ``torch.get_num_threads()`` threads (:mod:`probgen.kl._cpu_normal`; it is built on first use
    and skipped where there is no C compiler or ``PROBGEN_NATIVE=0``). Otherwise in-place
    operations run into ``out`` and one scratch buffer, on contiguous CPU tensors in blocks of
    2²⁰ elements that stay in cache.

    On CUDA, for contiguous arguments of one shape and dtype (float32 or float64) and where
    ``triton`` is installed, one Triton kernel computes the KL in a single pass (four reads and
    one write per element, the float64 series selected per element): with ``out`` given and
    ``validate=False`` the call never synchronises with the host. Otherwise on a GPU the
    in-place operations run once over the whole tensors (no blocks; in float64 one
    synchronisation to find the elements that need the series).

    Args:
        loc_p, scale_p, loc_q, scale_q: tensors of broadcastable shapes, scales positive.
        out: optional preallocated result of the broadcast shape and the arguments' dtype.
        validate: check that scales are positive and locations not NaN (a ``ValueError`` naming
            the parameter otherwise); costs one read of each argument and, on a GPU, a few
            synchronisations.

    Returns:
        ``out`` (or a new tensor) of shape ``broadcast(loc_p, scale_p, loc_q, scale_q)``.

    Raises:
        RuntimeError: if gradients are required (use :func:`normal_kl` for training).
        ValueError: on invalid parameters (with ``validate``), or an ``out`` of the wrong shape,
            dtype or layout, or sharing memory with a parameter.
    """
    params = (loc_p, scale_p, loc_q, scale_q)
    if torch.is_grad_enabled() and any(x.requires_grad for x in params):
        raise RuntimeError("fused_normal_kl does not track gradients; use normal_kl")
    if validate:
        _check_params(loc_p=loc_p, scale_p=scale_p, loc_q=loc_q, scale_q=scale_q)
    same = (
        loc_p.shape == scale_p.shape == loc_q.shape == scale_q.shape
        and loc_p.dtype == scale_p.dtype == loc_q.dtype == scale_q.dtype
    )
    if same:
        shape, dtype = loc_p.shape, loc_p.dtype
    else:
        shape = torch.broadcast_shapes(*(x.shape for x in params))
        dtype = torch.promote_types(loc_p.dtype, scale_p.dtype)
    if out is None:
        out = torch.empty(shape, dtype=dtype, device=loc_p.device)
    elif out.shape != shape or out.dtype != dtype or not out.is_contiguous():
        raise ValueError(
            f"out must be a contiguous tensor of shape {tuple(shape)} and dtype {dtype}, "
            f"got shape {tuple(out.shape)} and dtype {out.dtype}"
        )
    else:
        storage = out.untyped_storage().data_ptr()
        for name, x in zip(("loc_p", "scale_p", "loc_q", "scale_q"), params, strict=True):
            if x.untyped_storage().data_ptr() == storage:
                raise ValueError(
                    f"out must not share memory with {name} (the result is not in place)"
                )
    contiguous = all(x.is_contiguous() for x in params)
    if (
        same
        and contiguous
        and dtype in _KERNEL_DTYPES
        and all(x.device == out.device for x in params)
    ):
        device = out.device.type
        kernels = _cpu_kernels() if device == "cpu" else None
        launch = kernels.forward if kernels else _triton_launch() if device == "cuda" else None
        if launch is not None:
            launch(*params, out)
            return out
    if same and contiguous:
        return _blocked(params, out)
    if not same:
        params = tuple(x.expand(shape) for x in params)
    _fused_into(*params, out=out, tmp=torch.empty_like(out))
    return out


@functools.cache
def _cpu_kernels() -> CpuKernels | None:
    """The compiled CPU kernel (forward and backward), or ``None`` where it cannot be built."""
    from probgen.kl._cpu_normal import load

    return load()


@functools.cache
def _triton_launch() -> Callable[..., None] | None:
    """The Triton kernel's launcher, or ``None`` where triton is not installed (first CUDA call)."""
    try:
        from probgen.kl._triton_normal import launch
    except ImportError:
        return None
    return launch


def _blocked(params: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
    """KL into ``out`` block by block; all tensors contiguous, same shape and dtype.

    The blocks are for CPU caches: on other devices the whole tensor is one block, so that
    the float64 series check synchronises once, not once per block.
    """
    views = [x.view(-1) for x in (*params, out)]
    n = out.numel()
    size = _BLOCK if out.device.type == "cpu" else max(n, 1)
    tmp = torch.empty(min(n, size), dtype=out.dtype, device=out.device)
    for start in range(0, n, size):
        block = [v[start : start + size] for v in views]
        _fused_into(*block[:4], out=block[4], tmp=tmp[: block[4].numel()])
    return out


def _grad_block(
    grad: torch.Tensor,
    params: list[torch.Tensor],
    grads: list[torch.Tensor | None],
    tmp: list[torch.Tensor],
) -> None:
    """Gradients of the KL on one block, into ``grads`` (``None``: not needed)."""
    lp, sp, lq, sq = params
    g_lp, g_sp, g_lq, g_sq = grads
    a = torch.div(grad, sq, out=tmp[0])
    t = torch.sub(lp, lq, out=tmp[1]).div_(sq)
    r = torch.div(sp, sq, out=tmp[2])
    if g_lp is not None or g_lq is not None:
        g_loc = torch.mul(a, t, out=g_lp if g_lp is not None else tmp[3])  # ∂/∂μ_p = γ t/σ_q
        if g_lq is not None:
            torch.neg(g_loc, out=g_lq)
    if g_sp is not None:  # ∂/∂σ_p = γ (r² − 1)/σ_p
        torch.mul(r, r, out=g_sp).sub_(1).mul_(grad).div_(sp)
    if g_sq is not None:  # ∂/∂σ_q = γ (1 − r² − t²)/σ_q
        torch.mul(r, r, out=g_sq).addcmul_(t, t).neg_().add_(1).mul_(a)


def _eager_grads(
    grad: torch.Tensor, params: tuple[torch.Tensor, ...], needed: tuple[bool, ...]
) -> tuple[torch.Tensor | None, ...]:
    """grad · ∂KL/∂(μ_p, σ_p, μ_q, σ_q) by differentiable operations (for double backward)."""
    lp, sp, lq, sq = params
    t, r = (lp - lq) / sq, sp / sq
    g_loc = grad * t / sq
    grads = (g_loc, grad * (r * r - 1) / sp, -g_loc, grad * (1 - r * r - t * t) / sq)
    return tuple(g if need else None for g, need in zip(grads, needed, strict=True))


class _NormalKL(torch.autograd.Function):
    """KL(N_p ‖ N_q) with the compiled kernel's forward and analytic backward (without it,
    blocked in-place passes for both).

    For contiguous same-shape arguments: the forward allocates only the result, the backward
    only the gradients it returns. A backward that builds a graph (``create_graph=True``)
    computes the same gradients by differentiable operations, so that the KL is twice
    differentiable.
    """

    @staticmethod
    def forward(ctx, loc_p, scale_p, loc_q, scale_q):  # type: ignore[override]
        ctx.save_for_backward(loc_p, scale_p, loc_q, scale_q)
        return _cpu_forward((loc_p, scale_p, loc_q, scale_q))

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        params = ctx.saved_tensors
        if torch.is_grad_enabled():
            return _eager_grads(grad, params, ctx.needs_input_grad)
        grads = [
            torch.empty_like(x) if need else None
            for x, need in zip(params, ctx.needs_input_grad, strict=True)
        ]
        grad = grad.contiguous()
        kernels = _cpu_kernels() if grad.dtype in _KERNEL_DTYPES else None
        if kernels is not None:
            kernels.backward(grad, params, grads)
            return tuple(grads)
        n = grad.numel()
        size = min(n, _BLOCK)
        tmp = [torch.empty(size, dtype=grad.dtype, device=grad.device) for _ in range(4)]
        flat = [x.view(-1) for x in params]
        flat_grads = [g.view(-1) if g is not None else None for g in grads]
        flat_grad = grad.view(-1)
        for start in range(0, n, _BLOCK):
            stop = min(start + _BLOCK, n)
            _grad_block(
                flat_grad[start:stop],
                [x[start:stop] for x in flat],
                [g[start:stop] if g is not None else None for g in flat_grads],
                [x[: stop - start] for x in tmp],
            )
        return tuple(grads)


def _normal_kl_dispatch(
    loc_p: torch.Tensor, scale_p: torch.Tensor, loc_q: torch.Tensor, scale_q: torch.Tensor
) -> torch.Tensor:
    """Same shape and dtype on the CPU: the compiled kernel (forward, and backward under
    autograd) on contiguous copies of broadcast arguments; without it the blocked passes for
    contiguous arguments (under autograd above 2¹⁶ elements). Off the CPU without autograd
    :func:`fused_normal_kl` (one Triton kernel on CUDA). Otherwise the eager formula."""
    params = (loc_p, scale_p, loc_q, scale_q)
    dtype = loc_p.dtype
    if not (
        loc_p.shape == scale_p.shape == loc_q.shape == scale_q.shape
        and dtype == scale_p.dtype == loc_q.dtype == scale_q.dtype
    ):
        return normal_kl(*params)
    grad = torch.is_grad_enabled() and (
        loc_p.requires_grad or scale_p.requires_grad or loc_q.requires_grad or scale_q.requires_grad
    )
    if loc_p.device.type != "cpu":
        # The blocked backward is for CPU caches: on a GPU its block loop cost 2.1× autograd.
        return normal_kl(*params) if grad else fused_normal_kl(*params, validate=False)
    if dtype in _KERNEL_DTYPES and _cpu_kernels() is not None:
        params = tuple(x.contiguous() for x in params)
        return _NormalKL.apply(*params) if grad else _cpu_forward(params)
    contiguous = all(x.is_contiguous() for x in params)
    if grad:
        if loc_p.numel() > _AUTOGRAD_BLOCKED and contiguous:
            return _NormalKL.apply(*params)
        return normal_kl(*params)
    if contiguous:
        return _cpu_forward(params)
    out = torch.empty_like(loc_p)
    _fused_into(*params, out=out, tmp=torch.empty_like(out))
    return out


def _cpu_forward(params: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """KL of contiguous same-shape CPU tensors: the compiled kernel, else the blocked passes."""
    out = torch.empty_like(params[0])
    kernels = _cpu_kernels() if out.dtype in _KERNEL_DTYPES else None
    if kernels is not None:
        kernels.forward(*params, out)
        return out
    return _blocked(params, out)


@register_kl(Normal, Normal)
def _kl_normal_normal(p: Normal, q: Normal) -> torch.Tensor:
    r"""Batchwise KL(Normal ‖ Normal) = ½(r² − 1) − log r + ½t², r = σ_p/σ_q, t = (μ_p − μ_q)/σ_q.

    Evaluated as g(d) + d²/2 + t²/2 (each ≥ 0), d = (σ_p − σ_q)/σ_q. Result shape:
    broadcast of the batch shapes. Reference: ``docs/kl/normal.md``.
    """
    return _normal_kl_dispatch(p.loc, p.scale, q.loc, q.scale)


@register_kl(LogNormal, LogNormal)
def _kl_lognormal_lognormal(p: LogNormal, q: LogNormal) -> torch.Tensor:
    r"""Batchwise KL(LogNormal ‖ LogNormal) = KL of the base normals (exp is a common bijection).

    Result shape: broadcast of the batch shapes. Reference: ``docs/kl/normal.md``.
    """
    return _normal_kl_dispatch(p.loc, p.scale, q.loc, q.scale)


@register_kl(HalfNormal, HalfNormal)
def _kl_halfnormal_halfnormal(p: HalfNormal, q: HalfNormal) -> torch.Tensor:
    r"""Batchwise KL(HalfNormal(σ_p) ‖ HalfNormal(σ_q)) = ½(r² − 1) − log r, r = σ_p/σ_q.

    Evaluated as g(d) + d²/2, d = (σ_p − σ_q)/σ_q. Result shape: broadcast of the batch shapes.
    Reference: ``docs/kl/normal.md``.
    """
    return normal_scale_kl(p.scale, q.scale)
