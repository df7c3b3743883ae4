"""KL kernels: probgen vs torch for Normal, diagonal Normal, MVN and low-rank MVN, by size.

For each family and size (number of parameter elements of one distribution), the time of
probgen's closed form and of torch's own (probgen's overrides turned off), the bytes the kernel
must at least read and write, the achieved GB/s, and that as a fraction of the device's measured
copy bandwidth (the floor for these memory-bound kernels; the dense MVN is compute-bound,
O(B·d³), and shown for its time).

    python benchmarks/kl_kernels.py [--device cuda] [--quick]

Writes ``docs/benchmarks/kl_kernels.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.distributions as td

import probgen  # noqa: F401  (registers the closed forms)
from probgen.benchmarking import (
    environment,
    measure_side_by_side,
    resolve_device,
    time_fn,
    write_markdown,
)
from probgen.kl import torch_kl_only

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks"


def copy_bandwidth(device: torch.device, nbytes: int = 400_000_000) -> float:
    """Bytes per second of a device-to-device copy (read + write counted)."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    t = time_fn(lambda: dst.copy_(src), device=device, warmup=2, repeats=5)
    return 2 * nbytes / t.median


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(DOCS / "kl_kernels.md"))
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    top = 8 if device.type == "cuda" else 7
    sizes = [10**k for k in range(3, top + 1)]
    if args.quick:
        sizes = sizes[::2]
    bandwidth = copy_bandwidth(device)
    print(f"copy bandwidth: {bandwidth / 1e9:.1f} GB/s", flush=True)
    rows = []
    families = ["Normal", "diagonal Normal (d=64)", "MVN (d=16)", "low-rank MVN (d=64, r=4)"]
    for family in families:
        for n in sizes:
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
            print(*rows[-1], sep=" | ", flush=True)
    write_markdown(
        args.out,
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
            "for completeness. Medians of interleaved rounds."
        ),
    )


if __name__ == "__main__":
    main()
