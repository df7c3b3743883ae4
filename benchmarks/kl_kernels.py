"""KL kernels: probgen vs torch for Normal, diagonal Normal, MVN and low-rank MVN, by size.

For each family and size (number of parameter elements of one distribution), the time of
probgen's closed form and of torch's own (probgen's overrides turned off), the bytes the kernel
must at least read and write, the achieved GB/s, and that as a fraction of the device's measured
copy bandwidth (the floor for these memory-bound kernels; the dense MVN is compute-bound,
O(B·d³), shown for its time and measured up to 1e7 elements only).

    python benchmarks/kl_kernels.py [--device cuda] [--quick] [--max-size 1e6] [--out PAGE.md]

Sizes 1e3 … 1e7 on the CPU, 1e3 … 1e8 on a GPU; ``--quick`` keeps every other size and the
largest. Writes ``docs/benchmarks/kl_kernels.md`` (CPU) or ``docs/benchmarks/gpu/kl_kernels.md``
(CUDA), or ``--out``, and the plot ``kl_kernels.png`` next to it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.distributions as td

import probgen  # noqa: F401  (registers the closed forms)
from probgen.benchmarking import (
    Failures,
    Panel,
    copy_bandwidth,
    default_output,
    environment,
    measure_side_by_side,
    resolve_device,
    save_figure,
    write_markdown,
)
from probgen.kl import torch_kl_only

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks"
FAMILIES = ["Normal", "diagonal Normal (d=64)", "MVN (d=16)", "low-rank MVN (d=64, r=4)"]
# Largest size per family where less than the device's: the dense MVN is compute-bound (its
# batched Cholesky solves are O(B·d³)); 1e8 elements would only add minutes.
LARGEST = {"MVN (d=16)": 10**7}


def _pos(shape, device):
    return torch.empty(shape, device=device).uniform_(0.5, 2.0)


def make_pair(family: str, n: int, device: torch.device):
    """Two distributions of ``family`` with ~n parameter elements each, and the minimal bytes
    moved by a KL kernel on them (inputs of both, one output element per batch element)."""
    if family == "Normal":
        p = td.Normal(torch.randn(n, device=device), _pos(n, device))
        q = td.Normal(torch.randn(n, device=device), _pos(n, device))
        return p, q, 4 * (4 * n + n)
    if family == "diagonal Normal (d=64)":
        b, d = max(n // 64, 1), 64
        make = lambda: td.Independent(  # noqa: E731
            td.Normal(torch.randn(b, d, device=device), _pos((b, d), device)), 1
        )
        return make(), make(), 4 * (4 * b * d + b)
    if family == "MVN (d=16)":
        b, d = max(n // (16 * 17), 1), 16

        def make():
            a = torch.randn(b, d, d, device=device) / d**0.5
            cov = a @ a.mT + torch.eye(d, device=device)
            return td.MultivariateNormal(torch.randn(b, d, device=device), covariance_matrix=cov)

        p, q = make(), make()
        p.scale_tril, q.scale_tril  # noqa: B018  (factor once, outside the timing)
        return p, q, 4 * (2 * b * d * d + 2 * b * d + b)
    if family == "low-rank MVN (d=64, r=4)":
        b, d, r = max(n // (64 * 6), 1), 64, 4
        make = lambda: td.LowRankMultivariateNormal(  # noqa: E731
            torch.randn(b, d, device=device),
            torch.randn(b, d, r, device=device) / 4,
            _pos((b, d), device),
        )
        return make(), make(), 4 * (2 * b * d * (r + 2) + b)
    raise ValueError(family)


def sizes_for(device: torch.device, quick: bool, max_size: float | None) -> list[int]:
    """1e3 … 1e7 (CPU) or 1e8 (GPU); quick: every other one, and always the largest."""
    top = 8 if device.type == "cuda" else 7
    sizes = [10**k for k in range(3, top + 1)]
    if quick:
        sizes = sorted({*sizes[::2], sizes[-1]})
    if max_size is not None:
        sizes = [n for n in sizes if n <= max_size]
    return sizes


def plot(path: Path, gbs: dict[str, dict[str, tuple[list, list]]], bandwidth: float):
    """GB/s against size, one panel per family, probgen and torch, the copy bandwidth dashed."""
    panels = [
        Panel(
            family + (" (compute-bound)" if family.startswith("MVN") else ""),
            "elements",
            "GB/s",
            lines,
            logx=True,
            logy=True,
            hlines={"copy_": bandwidth / 1e9},
        )
        for family, lines in gbs.items()
    ]
    return save_figure(path, panels, title="KL kernels: achieved bandwidth")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--max-size", type=float, default=None, help="largest size measured")
    parser.add_argument("--out", type=Path, default=None, help="the page (.md) to write")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    out = args.out if args.out is not None else default_output(DOCS, "kl_kernels", device)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = sizes_for(device, args.quick, args.max_size)
    # Four float32 buffers of the largest size: out of every cache, at most 400 MB.
    bandwidth = copy_bandwidth(device, min(400_000_000, max(4_000_000, 16 * sizes[-1])))
    print(f"copy bandwidth: {bandwidth / 1e9:.1f} GB/s", flush=True)
    failures = Failures()
    rows = []
    gbs_lines: dict[str, dict[str, tuple[list, list]]] = {}
    for family in FAMILIES:
        lines = gbs_lines.setdefault(family, {"probgen": ([], []), "torch": ([], [])})
        for n in sizes:
            if n > LARGEST.get(family, n):
                continue
            with failures.guard(f"{family}, {n:.0e}"):
                torch.manual_seed(0)
                p, q, nbytes = make_pair(family, n, device)

                def torch_kl(p=p, q=q):
                    with torch_kl_only():
                        return td.kl_divergence(p, q)

                t = measure_side_by_side(
                    {"probgen": lambda p=p, q=q: td.kl_divergence(p, q), "torch": torch_kl},
                    device=device,
                    rounds=5 if args.quick else 11,
                )
                del p, q, torch_kl
                gbs = {k: nbytes / v.median / 1e9 for k, v in t.items()}
                rows.append(
                    [
                        family,
                        f"{n:.0e}",
                        t["probgen"],
                        t["torch"],
                        f"{t['torch'].median / t['probgen'].median:.2f}",
                        f"{gbs['probgen']:.2f} ({gbs['probgen'] * 1e9 / bandwidth:.0%})",
                        f"{gbs['torch']:.2f} ({gbs['torch'] * 1e9 / bandwidth:.0%})",
                    ]
                )
                for name in lines:
                    lines[name][0].append(n)
                    lines[name][1].append(gbs[name])
                print(*rows[-1], sep=" | ", flush=True)
    image = plot(out.with_suffix(".png"), gbs_lines, bandwidth)
    write_markdown(
        out,
        "KL kernels: probgen vs torch",
        [
            (
                "",
                [
                    "family",
                    "elements",
                    "probgen",
                    "torch",
                    "speed-up",
                    "probgen GB/s (of copy)",
                    "torch GB/s (of copy)",
                ],
                rows,
            )
        ],
        env={**environment(device), "copy bandwidth": f"{bandwidth / 1e9:.1f} GB/s"},
        notes=(
            "float32. 'torch' is torch.distributions.kl_divergence with probgen's overrides "
            "turned off (probgen.torch_kl_only), so both go through the same dispatch. GB/s "
            "counts the least bytes a kernel must move (both distributions' parameters read "
            "once, the result written once); dense MVN is compute-bound, its GB/s is shown "
            "for completeness (and measured up to 1e7 elements). Medians of interleaved rounds"
            + (", each call timed with CUDA events." if device.type == "cuda" else ".")
            + (" Quick mode." if args.quick else "")
        ),
        images=[image],
        failures=failures,
    )
    print(f"written to {out}", file=sys.stderr)
    return failures.exit_status()


if __name__ == "__main__":
    raise SystemExit(main())
