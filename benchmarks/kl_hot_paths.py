"""Focused timing of the stable discrete and low-rank KL closed forms against torch's own forms.

Each case builds p and q once (1e5 parameter elements; Categorical 1e4 × 10; low-rank batch
1e5/d with r = max(1, d/8)), then times probgen's registered function and the torch function
it replaced in interleaved rounds (A, B, A, B, …), one thread, by thread CPU time (robust on a
shared machine: time spent waiting for a core is not counted, page faults are), and prints the
medians and their ratio.

    python benchmarks/kl_hot_paths.py [--rounds 41] [--only Binomial,Poisson] [--both-malloc]

``--both-malloc`` runs the cases twice in subprocesses: with the default glibc allocator
settings and with ``MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=10000000000``
(fresh ~400 kB buffers are then recycled from the heap instead of being mapped, and
page-faulted, anew on every call).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.distributions as td

import probgen  # noqa: F401  (registers the closed forms)
from probgen.kl import registry

TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "1000000000", "MALLOC_TRIM_THRESHOLD_": "10000000000"}
N = 100_000


def _unit(n, dtype):
    return torch.empty(n, dtype=dtype).uniform_(0.05, 0.95)


def _pos(*shape, dtype):
    return torch.empty(*shape, dtype=dtype).uniform_(0.5, 3.0)


def _low_rank(b, d, dtype):
    r = max(1, d // 8)
    return td.LowRankMultivariateNormal(
        torch.randn(b, d, dtype=dtype),
        torch.randn(b, d, r, dtype=dtype) / 2,
        _pos(b, d, dtype=dtype),
    )


def _mvn(b, d, dtype):
    a = torch.randn(b, d, d, dtype=dtype) / d**0.5
    cov = a @ a.mT + torch.eye(d, dtype=dtype)
    return td.MultivariateNormal(torch.randn(b, d, dtype=dtype), covariance_matrix=cov)


def _near(x: torch.Tensor) -> torch.Tensor:
    return x * (1 + 1e-3 * torch.rand_like(x))


CASES: dict[str, Callable[[torch.dtype], tuple[td.Distribution, td.Distribution]]] = {
    "Bernoulli probs": lambda dt: (td.Bernoulli(_unit(N, dt)), td.Bernoulli(_unit(N, dt))),
    "Bernoulli logits": lambda dt: (
        td.Bernoulli(logits=torch.randn(N, dtype=dt)),
        td.Bernoulli(logits=torch.randn(N, dtype=dt)),
    ),
    "Binomial(10) probs": lambda dt: (
        td.Binomial(10, _unit(N, dt)),
        td.Binomial(10, _unit(N, dt)),
    ),
    "Geometric probs": lambda dt: (td.Geometric(_unit(N, dt)), td.Geometric(_unit(N, dt))),
    "Poisson generic": lambda dt: (td.Poisson(_pos(N, dtype=dt)), td.Poisson(_pos(N, dtype=dt))),
    "Poisson near-equal": lambda dt: (lambda r: (td.Poisson(r), td.Poisson(_near(r))))(
        _pos(N, dtype=dt)
    ),
    "Categorical probs": lambda dt: (
        td.Categorical(torch.rand(N // 10, 10, dtype=dt)),
        td.Categorical(torch.rand(N // 10, 10, dtype=dt)),
    ),
    "Categorical logits": lambda dt: (
        td.Categorical(logits=torch.randn(N // 10, 10, dtype=dt)),
        td.Categorical(logits=torch.randn(N // 10, 10, dtype=dt)),
    ),
    **{
        f"LowRank ‖ LowRank d={d}": (
            lambda dt, d=d: (_low_rank(N // d, d, dt), _low_rank(N // d, d, dt))
        )
        for d in (4, 16, 64)
    },
    **{
        f"MVN ‖ LowRank d={d}": (lambda dt, d=d: (_mvn(N // d, d, dt), _low_rank(N // d, d, dt)))
        for d in (4, 16, 64)
    },
}


def _time(fn: Callable[[], object]) -> float:
    t0 = time.thread_time()
    fn()
    return time.thread_time() - t0


def measure(name: str, dtype: torch.dtype, rounds: int) -> tuple[float, float]:
    """(probgen, torch) median thread CPU seconds for one case."""
    torch.manual_seed(0)
    p, q = CASES[name](dtype)
    key = (type(p), type(q))
    ours, theirs = registry.lookup(p, q), registry._REPLACED[key]
    fns = {"probgen": lambda: ours(p, q), "torch": lambda: theirs(p, q)}
    for fn in fns.values():
        for _ in range(3):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            times[k].append(_time(fn))
    return statistics.median(times["probgen"]), statistics.median(times["torch"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--only", default="", help="comma-separated substrings of case names")
    parser.add_argument("--both-malloc", action="store_true")
    args = parser.parse_args()
    if args.both_malloc:
        argv = [a for a in sys.argv if a != "--both-malloc"]
        for label, extra in (("default malloc", {}), ("tuned malloc", TUNED_MALLOC)):
            print(f"## {label}", flush=True)
            env = {k: v for k, v in os.environ.items() if k not in TUNED_MALLOC} | extra
            subprocess.run([sys.executable, *argv], env=env, check=True)
        return
    torch.set_num_threads(1)
    wanted = [w for w in args.only.split(",") if w]
    print("| pair | f32 probgen / torch (µs) | ratio | f64 probgen / torch (µs) | ratio |")
    print("|---|---|---|---|---|")
    for name in CASES:
        if wanted and not any(w in name for w in wanted):
            continue
        cells = [name]
        for dtype in (torch.float32, torch.float64):
            ours, theirs = measure(name, dtype, args.rounds)
            cells += [f"{ours * 1e6:.0f} / {theirs * 1e6:.0f}", f"{ours / theirs:.2f}"]
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
