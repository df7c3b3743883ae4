"""Check and time fused_normal_kl's Triton path on a GPU (runs on the CPU too, without it).

Usage::

    python benchmarks/gpu_triton_check.py                       # CUDA: 1e8 float32, 1e7 float64
    python benchmarks/gpu_triton_check.py --device cpu --n 1e6 --n64 1e5 --copy-mb 40

Checks, failing with exit status 1 on any problem:

* ``fused_normal_kl`` (on CUDA the Triton kernel) and the eager in-place pass against
  ``normal_kl`` in float64 on the same inputs: no NaN, no negative value, and the documented
  error bound (float32: 1e-5·KL + 2⁻²⁴(4|d| + 2⁻²²), d = σ_p/σ_q − 1; float64: 2e-10·KL, two
  results each within 1e-10 of the truth); the largest relative error (where KL ≥ 1e-3) and
  absolute error (below) are printed. A seventh of the elements have scales within 1e-7 of
  each other and equal locations (the float64 series).
* On CUDA: the Triton call with ``out=`` and ``validate=False`` makes no host synchronisation
  (``torch.cuda.set_sync_debug_mode("error")``), and every launch configuration of the sweep
  stays within the bound.

Times (CUDA events on a GPU; warm-up, then the median of ``--repeats`` interleaved rounds):
torch's closed form (what ``torch.distributions.kl_divergence`` runs without probgen),
probgen's ``normal_kl``, the eager fused pass (``_fused_into`` over the whole tensors), and the
Triton kernel (``fused_normal_kl(..., out=out, validate=False)``, CUDA only), as GB/s of the
bytes an ideal kernel moves (5 tensors × itemsize × n) and as % of the device's copy
bandwidth (``dst.copy_(src)`` of ``--copy-mb`` MB, read and write counted). The target is 70%
for float32 at 1e8 elements. Prints only; writes nothing.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch.distributions import Normal
from torch.distributions import kl as torch_kl

from probgen.benchmarking import (
    copy_bandwidth,
    environment,
    measure_side_by_side,
    resolve_device,
    time_fn,
)
from probgen.kl import normal as pg_normal

TARGET = 0.70  # fraction of copy bandwidth, float32 at 1e8 elements
SWEEP = {  # (BLOCK, num_warps) for the kernel; the defaults are (1024, 4) and (1024, 8)
    torch.float32: [(512, 4), (1024, 4), (2048, 4), (2048, 8), (4096, 8)],
    torch.float64: [(512, 4), (1024, 4), (1024, 8), (2048, 8)],
}


def _count(text: str) -> int:
    return int(float(text))


def make_inputs(n: int, dtype: torch.dtype, device: torch.device) -> list[torch.Tensor]:
    """Locations N(0, 1), scales in [0.5, 1.5); every 7th element: scales within 1e-7 relative
    and equal locations."""
    gen = torch.Generator(device=device).manual_seed(0)
    lp, lq = (torch.randn(n, generator=gen, dtype=dtype, device=device) for _ in range(2))
    sp, sq = (torch.rand(n, generator=gen, dtype=dtype, device=device) + 0.5 for _ in range(2))
    close = slice(0, n, 7)
    jitter = torch.rand(sp[close].shape, generator=gen, dtype=dtype, device=device)
    sq[close] = sp[close] * (1 + 1e-7 * (2 * jitter - 1))
    lq[close] = lp[close]
    return [lp, sp, lq, sq]


def bound(ref64: torch.Tensor, sp: torch.Tensor, sq: torch.Tensor, dtype) -> torch.Tensor:
    """Allowed |result − ref64| for a ``dtype`` result and another one within 1e-10 (float64)."""
    if dtype == torch.float64:
        return 2e-10 * ref64
    d = (sp.double() / sq.double() - 1).abs()
    return 1e-5 * ref64 + 2.0**-24 * (4 * d + 2.0**-22)


def check(name: str, result: torch.Tensor, ref64: torch.Tensor, allowed: torch.Tensor) -> bool:
    """Print the largest errors and their ratio to the bound; False on any problem.

    Relative error where the KL is at least 1e-3, absolute error below (where float32's
    bound is absolute).
    """
    value = result.double()
    nan, negative = int(torch.isnan(value).sum()), int((value < 0).sum())
    err = (value - ref64).abs()
    large = ref64 >= 1e-3
    rel = float((err[large] / ref64[large]).max()) if bool(large.any()) else 0.0
    small_abs = float(err[~large].max()) if bool((~large).any()) else 0.0
    over = err > allowed
    worst = float((err / allowed).nan_to_num(nan=0.0, posinf=float("inf")).max())
    ok = nan == 0 and negative == 0 and not bool(over.any())
    print(
        f"  {name:30s} rel err {rel:.2e}  abs err (KL < 1e-3) {small_abs:.2e}  "
        f"err/bound {worst:.3f}  NaN {nan}  negative {negative}  over bound {int(over.sum())}  "
        + ("ok" if ok else "FAIL")
    )
    return ok


def no_sync(fn) -> bool:
    """Whether ``fn()`` runs without a host synchronisation (CUDA sync debug mode)."""
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        fn()
    except RuntimeError as exc:
        print(f"  synchronisation: {exc}")
        return False
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    return True


def run_dtype(
    n: int, dtype: torch.dtype, device: torch.device, repeats: int, copy_bw: float, triton: bool
) -> tuple[bool, float | None]:
    """Check and time one dtype; returns (all checks passed, Triton's fraction of copy bw)."""
    print(f"\n{dtype} n = {n:.3g}")
    lp, sp, lq, sq = make_inputs(n, dtype, device)
    with torch.no_grad():
        ref64 = pg_normal.normal_kl(lp.double(), sp.double(), lq.double(), sq.double())
        allowed = bound(ref64, sp, sq, dtype)
        out, eager_out, tmp = (torch.empty_like(lp) for _ in range(3))
        ok = check("normal_kl", pg_normal.normal_kl(lp, sp, lq, sq), ref64, allowed)
        pg_normal._fused_into(lp, sp, lq, sq, out=eager_out, tmp=tmp)
        ok &= check("fused eager (_fused_into)", eager_out, ref64, allowed)
        pg_normal.fused_normal_kl(lp, sp, lq, sq, out=out)
        path = "Triton" if triton else "CPU blocks" if device.type == "cpu" else "eager"
        ok &= check(f"fused_normal_kl ({path})", out, ref64, allowed)
        if triton:
            launch = pg_normal._triton_launch()
            synced = not no_sync(
                lambda: pg_normal.fused_normal_kl(lp, sp, lq, sq, out=out, validate=False)
            )
            print(f"  Triton call with out=, validate=False: {'SYNCS' if synced else 'no sync'}")
            ok &= not synced
        del ref64

        p = Normal(lp, sp, validate_args=False)
        q = Normal(lq, sq, validate_args=False)
        candidates = {
            "torch kl_divergence": lambda: torch_kl._kl_normal_normal(p, q),
            "probgen normal_kl": lambda: pg_normal.normal_kl(lp, sp, lq, sq),
            "fused eager": lambda: pg_normal._fused_into(lp, sp, lq, sq, out=eager_out, tmp=tmp),
        }
        if triton:
            candidates["fused (Triton)"] = lambda: pg_normal.fused_normal_kl(
                lp, sp, lq, sq, out=out, validate=False
            )
        timings = measure_side_by_side(candidates, device=device, warmup=3, rounds=repeats)
    moved = 5 * lp.element_size() * n
    print(f"  {'candidate':24s} {'median':>10s} {'GB/s':>8s} {'% copy':>7s}")
    for name, t in timings.items():
        bw = moved / t.median
        print(f"  {name:24s} {t!s:>10s} {bw / 1e9:8.1f} {100 * bw / copy_bw:6.1f}%")
    fraction = moved / timings["fused (Triton)"].median / copy_bw if triton else None

    if triton:
        print("  sweep (BLOCK, num_warps):")
        ref64 = pg_normal.normal_kl(lp.double(), sp.double(), lq.double(), sq.double())
        for block, warps in SWEEP[dtype]:
            swept = torch.empty_like(lp)

            def call(block=block, warps=warps, swept=swept):
                launch(lp, sp, lq, sq, swept, block=block, num_warps=warps)

            call()
            ok &= check(f"BLOCK={block} num_warps={warps}", swept, ref64, allowed)
            t = time_fn(call, device=device, warmup=3, repeats=repeats)
            bw = moved / t.median
            print(f"    {t!s:>10s} {bw / 1e9:8.1f} GB/s {100 * bw / copy_bw:6.1f}% copy")
    return ok, fraction


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", help="cuda, cpu or auto (default)")
    parser.add_argument("--n", type=_count, default=10**8, help="float32 elements (1e8)")
    parser.add_argument("--n64", type=_count, default=10**7, help="float64 elements (1e7)")
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds (20)")
    parser.add_argument("--copy-mb", type=float, default=400.0, help="copy buffer, MB (400)")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    for key, value in environment(device).items():
        print(f"{key}: {value}")
    triton = device.type == "cuda" and pg_normal._triton_launch() is not None
    if device.type == "cuda" and not triton:
        print("FAIL: triton is not importable; fused_normal_kl takes the eager path on CUDA")

    copy_bw = copy_bandwidth(device, int(args.copy_mb * 1e6), args.repeats)
    print(f"\ncopy_ of {args.copy_mb:g} MB: {copy_bw / 1e9:.1f} GB/s (read + write)")

    ok32, fraction = run_dtype(args.n, torch.float32, device, args.repeats, copy_bw, triton)
    ok64, _ = run_dtype(args.n64, torch.float64, device, args.repeats, copy_bw, triton)
    ok = ok32 and ok64 and (triton or device.type != "cuda")

    if fraction is not None:
        met = fraction >= TARGET
        print(
            f"\nTriton float32 at n = {args.n:.3g}: {100 * fraction:.1f}% of copy bandwidth; "
            f"target {100 * TARGET:.0f}% at 1e8: {'met' if met else 'MISSED'}"
        )
    print("\nchecks:", "all passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
