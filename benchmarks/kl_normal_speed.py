"""Speed of KL(Normal ‖ Normal): torch's closed form, probgen's registered one, probgen's fused one.

Usage::

    python benchmarks/kl_normal_speed.py [--device cuda] [--quick] [--dtype float32]

For each size (1e3 … 1e7 elements; 1e8 on a GPU) the candidates run interleaved, in rotating
order, and the median of the repeats is reported, so that a busy machine slows all of them
alike. Achieved bandwidth counts the bytes an ideal kernel moves (four parameter reads and one
result write); the floor is a plain ``copy_`` of a buffer into a preallocated one, timed the same
way, and "% copy" is the fraction of that bandwidth reached. With autograd, the time is forward
plus backward (gradients for all four parameters).

The table is written to ``docs/benchmarks/kl_normal_speed.md``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.distributions import Normal
from torch.distributions import kl as torch_kl

import probgen
from probgen.kl import normal as pg_normal

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "kl_normal_speed.md"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_times(
    fns: dict[str, Callable[[], object]], repeats: int, device: torch.device
) -> dict[str, float]:
    """Median seconds per call of each function, run interleaved in rotating order."""
    names = list(fns)
    for name in names:  # warm-up
        fns[name]()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeats):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            _sync(device)
            start = time.perf_counter()
            fns[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _params(n: int, dtype: torch.dtype, device: torch.device, grad: bool) -> list[torch.Tensor]:
    gen = torch.Generator(device="cpu").manual_seed(0)
    locs = [torch.randn(n, generator=gen, dtype=dtype) for _ in range(2)]
    scales = [torch.rand(n, generator=gen, dtype=dtype) + 0.5 for _ in range(2)]
    return [x.to(device).requires_grad_(grad) for x in (locs[0], scales[0], locs[1], scales[1])]


def _backward(fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
    def run() -> None:
        fn().sum().backward()

    return run


def measure(n: int, dtype: torch.dtype, device: torch.device, repeats: int) -> dict[str, float]:
    lp, sp, lq, sq = _params(n, dtype, device, grad=False)
    p, q = Normal(lp, sp, validate_args=False), Normal(lq, sq, validate_args=False)
    out = torch.empty(n, dtype=dtype, device=device)
    src = torch.empty(n, dtype=dtype, device=device)
    dst = torch.empty_like(src)
    with torch.no_grad():
        row = _median_times(
            {
                "torch": lambda: torch_kl._kl_normal_normal(p, q),
                "registered": lambda: pg_normal._kl_normal_normal(p, q),
                "fused": lambda: pg_normal.fused_normal_kl(lp, sp, lq, sq, out=out, validate=False),
                "fused_new": lambda: pg_normal.fused_normal_kl(lp, sp, lq, sq),
                "copy": lambda: dst.copy_(src),
            },
            repeats,
            device,
        )
    gp = _params(n, dtype, device, grad=True)
    pg, qg = Normal(gp[0], gp[1], validate_args=False), Normal(gp[2], gp[3], validate_args=False)
    grad = _median_times(
        {
            "torch_grad": _backward(lambda: torch_kl._kl_normal_normal(pg, qg)),
            "registered_grad": _backward(lambda: pg_normal._kl_normal_normal(pg, qg)),
        },
        repeats,
        device,
    )
    row.update(grad)
    return row


def _row(n: int, row: dict[str, float], item: int) -> str:
    moved = 5 * n * item
    copy_bw = 2 * n * item / row["copy"]
    fused_bw = moved / row["fused"]
    torch_bw = moved / row["torch"]
    return (
        f"| {n:.0e} | {_fmt_time(row['torch'])} | {_fmt_time(row['registered'])} "
        f"| {_fmt_time(row['fused'])} | {_fmt_time(row['fused_new'])} "
        f"| {row['torch'] / row['registered']:.2f}× | {row['torch'] / row['fused']:.2f}× "
        f"| {fused_bw / 1e9:.1f} | {100 * fused_bw / copy_bw:.0f}% "
        f"| {100 * torch_bw / copy_bw:.0f}% | {_fmt_time(row['torch_grad'])} "
        f"| {_fmt_time(row['registered_grad'])} "
        f"| {row['torch_grad'] / row['registered_grad']:.2f}× |"
    )


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


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
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    sizes = [10**k for k in range(3, 8)] + ([10**8] if device.type == "cuda" else [])
    item = torch.finfo(dtype).bits // 8

    header = (
        "| elements | torch | registered | fused | fused, new out | ratio reg | ratio fused "
        "| fused GB/s | % copy | torch % copy | torch (grad) | registered (grad) | ratio grad |"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    tables = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        lines = [f"### {threads} thread{'s' if threads > 1 else ''}", "", header]
        lines.append("|" + "|".join("---:" for _ in range(header.count("|") - 1)) + "|")
        print("\n".join(lines), flush=True)
        for n in sizes:
            repeats = (5 if args.quick else 15) if n >= 10**7 else (30 if args.quick else 200)
            row = measure(n, dtype, device, repeats)
            lines.append(_row(n, row, item))
            print(lines[-1], flush=True)
        tables += [*lines, ""]

    if device.type == "cuda":
        machine = torch.cuda.get_device_name(device)
    else:
        machine = f"{_cpu_name()}, {os.cpu_count()} logical cores"
    meta = [
        "# KL(Normal ‖ Normal) speed",
        "",
        "Written by `benchmarks/kl_normal_speed.py`"
        + (" (`--quick`)" if args.quick else "")
        + f"; {args.dtype}, parameters of the full size, median of interleaved repeats.",
        "",
        f"- date: {datetime.date.today().isoformat()}",
        f"- device: {device.type}; machine: {machine}; {platform.system()} {platform.release()}",
        f"- torch {torch.__version__}, python {platform.python_version()}, "
        f"probgen {probgen.__version__ if hasattr(probgen, '__version__') else 'dev'}",
        f"- load average when started: {load:.1f} (the machine may be shared; the candidates run",
        "  interleaved so that load slows them alike, and each thread count gets its own table)",
        "",
        "Ratios are torch's time over probgen's (above 1: probgen is faster). *fused* is",
        "`probgen.kl.normal.fused_normal_kl` with a preallocated `out`; *registered* is what",
        "`torch.distributions.kl_divergence` runs after `import probgen`. *% copy* compares",
        "the achieved bandwidth (4 reads + 1 write) with a `copy_` of the same dtype.",
        "*(grad)*: forward and backward with gradients for all four parameters. *fused* writes",
        "into a preallocated `out`; *fused, new out* allocates it (and validates the parameters).",
        "",
    ]
    text = "\n".join([*meta, *tables])
    if not args.no_write:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(text)
        print(f"written to {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
