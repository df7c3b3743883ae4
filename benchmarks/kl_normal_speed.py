"""Speed of KL(Normal ‖ Normal): torch's closed form, probgen's registered one, probgen's fused one.

Usage::

    python benchmarks/kl_normal_speed.py [--device cuda] [--quick] [--dtype float32]
                                         [--max-size 1e6] [--out PAGE.md | --no-write]

For each size (1e3 … 1e7 elements; up to 1e8 on a GPU, also with ``--quick``) the candidates
run interleaved, in rotating order, and the median of the repeats is reported, so that a busy
machine slows all of them alike (on a GPU each call is timed with CUDA events after warm-up
calls). Achieved bandwidth counts the bytes an ideal kernel moves (four parameter reads and one
result write); the floor is a plain ``copy_`` of a buffer into a preallocated one, timed the same
way, and "% copy" is the fraction of that bandwidth reached. With autograd, the time is forward
plus backward (gradients for all four parameters). *fused* is whatever ``fused_normal_kl``
dispatches to: on the CPU its compiled C kernel (where a C compiler is found; the page says),
on CUDA its Triton kernel (where Triton is installed). On the CPU, *PyTorch passes* is the
path taken without the C kernel (in-place operations in cache-sized blocks), for comparison.

Writes ``docs/benchmarks/kl_normal_speed.md`` (CPU) or ``docs/benchmarks/gpu/kl_normal_speed.md``
(CUDA), or ``--out``, and the plot ``kl_normal_speed.png`` next to it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from torch.distributions import Normal
from torch.distributions import kl as torch_kl

from probgen import _native
from probgen.benchmarking import (
    Failures,
    Panel,
    default_output,
    environment,
    measure_side_by_side,
    resolve_device,
    save_figure,
    write_markdown,
)
from probgen.kl import normal as pg_normal

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
FORWARD = {
    "torch": "torch",
    "registered": "registered",
    "fused": "fused",
    "fused_new": "fused, new out",
    "passes": "PyTorch passes",
}
COLUMNS = [
    "elements",
    "torch",
    "registered",
    "fused",
    "fused, new out",
    "ratio reg",
    "ratio fused",
    "fused GB/s",
    "% copy",
    "torch % copy",
    "PyTorch passes % copy",
    "torch (grad)",
    "registered (grad)",
    "ratio grad",
]
# Fused KL as a fraction of the copy bandwidth: at least 70% at 1e8 elements on a GPU, 50% at
# 1e7 on the CPU.
TARGET = {"cuda": (0.7, "1e8"), "cpu": (0.5, "1e7")}


def _params(n: int, dtype: torch.dtype, device: torch.device, grad: bool) -> list[torch.Tensor]:
    """(loc_p, scale_p, loc_q, scale_q), drawn on ``device`` from a generator of that device."""
    gen = torch.Generator(device=device).manual_seed(0)
    locs = [torch.randn(n, generator=gen, dtype=dtype, device=device) for _ in range(2)]
    scales = [torch.rand(n, generator=gen, dtype=dtype, device=device) + 0.5 for _ in range(2)]
    return [x.requires_grad_(grad) for x in (locs[0], scales[0], locs[1], scales[1])]


def _backward(fn):
    def run() -> None:
        fn().sum().backward()

    return run


def _forward(n: int, dtype: torch.dtype, device: torch.device, repeats: int) -> dict:
    lp, sp, lq, sq = _params(n, dtype, device, grad=False)
    p, q = Normal(lp, sp, validate_args=False), Normal(lq, sq, validate_args=False)
    out = torch.empty(n, dtype=dtype, device=device)
    src = torch.empty(n, dtype=dtype, device=device).uniform_()
    dst = torch.empty_like(src)
    candidates = {
        "torch": lambda: torch_kl._kl_normal_normal(p, q),
        "registered": lambda: pg_normal._kl_normal_normal(p, q),
        "fused": lambda: pg_normal.fused_normal_kl(lp, sp, lq, sq, out=out, validate=False),
        "fused_new": lambda: pg_normal.fused_normal_kl(lp, sp, lq, sq),
        "copy": lambda: dst.copy_(src),
    }
    if device.type == "cpu":
        passes_out = torch.empty_like(out)
        candidates["passes"] = lambda: pg_normal._blocked((lp, sp, lq, sq), passes_out)
    with torch.no_grad():
        return measure_side_by_side(
            candidates,
            device=device,
            warmup=2,
            rounds=repeats,
            rotate=True,
        )


def _with_grad(n: int, dtype: torch.dtype, device: torch.device, repeats: int) -> dict:
    gp = _params(n, dtype, device, grad=True)
    p, q = Normal(gp[0], gp[1], validate_args=False), Normal(gp[2], gp[3], validate_args=False)
    return measure_side_by_side(
        {
            "torch_grad": _backward(lambda: torch_kl._kl_normal_normal(p, q)),
            "registered_grad": _backward(lambda: pg_normal._kl_normal_normal(p, q)),
        },
        device=device,
        warmup=2,
        rounds=repeats,
        rotate=True,
    )


def measure(n: int, dtype: torch.dtype, device: torch.device, repeats: int) -> dict[str, float]:
    """Median seconds per call of every candidate at ``n`` elements (the forward candidates'
    tensors are freed before the autograd ones are made)."""
    timings = _forward(n, dtype, device, repeats)
    timings.update(_with_grad(n, dtype, device, repeats))
    return {name: t.median for name, t in timings.items()}


def bandwidths(n: int, row: dict[str, float], item: int) -> dict[str, float]:
    """Bytes per second of each forward candidate (4 reads + 1 write) and of the copy (1 + 1)."""
    gbs = {name: 5 * n * item / row[name] for name in FORWARD if name in row}
    gbs["copy"] = 2 * n * item / row["copy"]
    return gbs


def table_row(n: int, row: dict[str, float], item: int) -> list[str]:
    bw = bandwidths(n, row, item)
    return [
        f"{n:.0e}",
        _fmt_time(row["torch"]),
        _fmt_time(row["registered"]),
        _fmt_time(row["fused"]),
        _fmt_time(row["fused_new"]),
        f"{row['torch'] / row['registered']:.2f}×",
        f"{row['torch'] / row['fused']:.2f}×",
        f"{bw['fused'] / 1e9:.1f}",
        f"{bw['fused'] / bw['copy']:.0%}",
        f"{bw['torch'] / bw['copy']:.0%}",
        f"{bw['passes'] / bw['copy']:.0%}" if "passes" in bw else "—",
        _fmt_time(row["torch_grad"]),
        _fmt_time(row["registered_grad"]),
        f"{row['torch_grad'] / row['registered_grad']:.2f}×",
    ]


def _cpu_kernel() -> str:
    """Which CPU path *fused* measures: the compiled kernel (and its build) or why not."""
    kernels = pg_normal._cpu_kernels()
    state = next(iter(_native.status().values()), "not loaded")
    return ("compiled C, " if kernels is not None else "none (PyTorch passes): ") + state


def _fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def plot(
    path: Path, results: dict[int, dict[int, dict[str, float]]], item: int, device: str
) -> Path | None:
    """GB/s and % of copy bandwidth against the number of elements, one line per candidate
    (and thread count, when there are several)."""
    gbs_lines, pct_lines = {}, {}
    for threads, by_size in results.items():
        suffix = f" ({threads} thr.)" if len(results) > 1 else ""
        sizes = sorted(by_size)
        bws = [bandwidths(n, by_size[n], item) for n in sizes]
        for name, label in {**FORWARD, "copy": "copy_"}.items():
            if name not in bws[0]:
                continue
            gbs_lines[label + suffix] = (sizes, [bw[name] / 1e9 for bw in bws])
            if name != "copy":
                pct_lines[label + suffix] = (sizes, [100 * bw[name] / bw["copy"] for bw in bws])
    panels = [
        Panel("Achieved bandwidth", "elements", "GB/s", gbs_lines, logx=True, logy=True),
        Panel(
            "Fraction of copy bandwidth",
            "elements",
            "% of copy_",
            pct_lines,
            logx=True,
            hlines={
                f"target {TARGET[device][0]:.0%} at {TARGET[device][1]}": 100 * TARGET[device][0]
            }
            if device in TARGET
            else {},
        ),
    ]
    return save_figure(path, panels, title="KL(Normal ‖ Normal), forward")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[torch.get_num_threads()],
        help="intra-op thread counts to measure, one table each (default: torch's)",
    )
    parser.add_argument("--max-size", type=float, default=None, help="largest size measured")
    parser.add_argument("--out", type=Path, default=None, help="the page (.md) to write")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    out = args.out if args.out is not None else default_output(DOCS, "kl_normal_speed", device)
    dtype = getattr(torch, args.dtype)
    sizes = [10**k for k in range(3, 8)] + ([10**8] if device.type == "cuda" else [])
    if args.max_size is not None:
        sizes = [n for n in sizes if n <= args.max_size]
    item = torch.finfo(dtype).bits // 8
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    env = {**environment(device), "dtype": args.dtype, "load average when started": f"{load:.1f}"}
    if device.type == "cpu":
        env["CPU kernel"] = _cpu_kernel()

    failures = Failures()
    results: dict[int, dict[int, dict[str, float]]] = {}
    sections = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        results[threads] = {}
        rows = []
        print(f"{threads} thread(s): " + " | ".join(COLUMNS), flush=True)
        for n in sizes:
            repeats = (5 if args.quick else 15) if n >= 10**7 else (30 if args.quick else 200)
            with failures.guard(f"{threads} threads, {n:.0e} elements"):
                results[threads][n] = measure(n, dtype, device, repeats)
                rows.append(table_row(n, results[threads][n], item))
                print(" | ".join(rows[-1]), flush=True)
        sections.append((f"{threads} thread{'s' if threads > 1 else ''}", COLUMNS, rows))

    if args.no_write:
        return failures.exit_status()
    image = plot(out.with_suffix(".png"), results, item, device.type)
    notes = (
        "Written by `benchmarks/kl_normal_speed.py`"
        + (" (`--quick`)" if args.quick else "")
        + f"; {args.dtype}, parameters of the full size, median of interleaved repeats in "
        "rotating order (CUDA events on a GPU). Ratios are torch's time over probgen's (above 1: "
        "probgen is faster). *fused* is `probgen.kl.normal.fused_normal_kl` with a preallocated "
        "`out` and no validation; *fused, new out* allocates it and validates the parameters; "
        "*registered* is what `torch.distributions.kl_divergence` runs after `import probgen`. "
        "*% copy* compares the achieved bandwidth (4 reads + 1 write) with a `copy_` of the "
        "same size and dtype (1 read + 1 write); it can pass 100% (up to 125%), since a written "
        "line is first read for ownership, an access the counts leave out: the copy makes 3 "
        "accesses for the 2 counted, the kernel 6 for 5. *PyTorch passes* (CPU): "
        "`fused_normal_kl`'s path where no C compiler is found. *(grad)*: forward and backward "
        "with gradients for all four parameters. The machine may be shared: the candidates run "
        "interleaved so that load slows them alike, and each thread count gets its own table."
    )
    write_markdown(
        out,
        "KL(Normal ‖ Normal) speed",
        sections,
        env=env,
        notes=notes,
        images=[image],
        failures=failures,
    )
    print(f"written to {out}", file=sys.stderr)
    return failures.exit_status()


if __name__ == "__main__":
    raise SystemExit(main())
