"""probgen's stable closed forms vs torch's own, pair by pair, at 1e5 elements.

Target (KL core issue): every stable closed form within 2× of torch's implementation of the same
pair. For the pairs torch lacks, the closed form is timed against a 100-sample Monte Carlo
estimate instead.

    python benchmarks/kl_closed_forms.py [--device cuda] [--size 100000] [--quick] [--out PAGE.md]

Writes ``docs/benchmarks/kl_closed_forms.md`` (CPU) or ``docs/benchmarks/gpu/kl_closed_forms.md``
(CUDA), or ``--out``. A pair that raises is listed on the page and the others still run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from _families import EVENT, make

import probgen
from probgen.benchmarking import (
    Failures,
    default_output,
    environment,
    measure_side_by_side,
    resolve_device,
    write_markdown,
)
from probgen.kl import registry

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks"
MC_SAMPLES = 100  # reference for the pairs torch lacks


def _compatible(p, q) -> bool:
    try:
        probgen.kl_divergence(p, q, method="analytic")
        return True
    except (ValueError, NotImplementedError):
        return False


def _samples_fit(p, q) -> bool:
    """Whether the Monte Carlo reference can be computed: in float32 some samples round onto the
    edge of the support (Kumaraswamy's x = 1), where the densities are NaN and mc_kl raises."""
    try:
        probgen.mc_kl(p, q, MC_SAMPLES, seed=0)
        return True
    except FloatingPointError:
        return False


def run(
    device: torch.device, size: int, rounds: int, failures: Failures, *, quick: bool = False
) -> list[list[object]]:
    """One row per registered pair and dtype. ``quick``: one warm-up call instead of three and
    no Monte Carlo references (for the pairs torch lacks they are the slow part: a VonMises
    sample of 100 × 1e5 takes seconds), so those rows show probgen's time alone."""
    rows = []
    pairs = sorted(
        registry.probgen_pairs().items(), key=lambda kv: (kv[0][0].__name__, kv[0][1].__name__)
    )
    for (tp, tq), fn in pairs:
        for dtype in (torch.float32, torch.float64):
            dtype_name = str(dtype).replace("torch.", "")
            case = f"{tp.__name__} ‖ {tq.__name__}, {dtype_name}"
            with failures.guard(case):
                torch.manual_seed(0)
                p, q = make(tp, size, dtype, device), make(tq, size, dtype, device)
                if p is None or q is None or not _compatible(p, q):
                    continue
                original = registry._REPLACED.get((tp, tq))
                candidates = {"probgen": lambda p=p, q=q, fn=fn: fn(p, q)}
                if bool(torch.isinf(fn(p, q)).all()):
                    label, n_rounds = "none: +inf, support mismatch", rounds
                elif original is not None:
                    candidates["reference"] = lambda p=p, q=q, f=original: f(p, q)
                    label, n_rounds = "torch's closed form", rounds
                elif quick:
                    label, n_rounds = "none: Monte Carlo reference skipped (--quick)", rounds
                elif p.event_shape == q.event_shape and _samples_fit(p, q):
                    candidates["reference"] = lambda p=p, q=q: probgen.mc_kl(
                        p, q, MC_SAMPLES, validate=False
                    )
                    label, n_rounds = f"MC, {MC_SAMPLES} samples", 3
                elif p.event_shape == q.event_shape:
                    label, n_rounds = f"none: MC NaN in {dtype_name} (samples on the edge)", rounds
                else:  # the same law in two encodings (Beta/Dirichlet, Categorical/one-hot)
                    label, n_rounds = "none", rounds
                t = measure_side_by_side(
                    candidates, device=device, rounds=n_rounds, warmup=1 if quick else 3
                )
                ref = t.get("reference")
                ratio = f"{t['probgen'].median / ref.median:.2f}" if ref else "—"
                verdict = (
                    ""
                    if original is None or not ref
                    else ("ok" if float(ratio) <= 2 else "**over 2×**")
                )
                rows.append(
                    [
                        f"{tp.__name__} ‖ {tq.__name__}",
                        dtype_name,
                        t["probgen"],
                        f"{ref} ({label})" if ref else label,
                        ratio,
                        verdict,
                    ]
                )
                print(*rows[-1], sep=" | ", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument(
        "--quick", action="store_true", help="fewer rounds, no Monte Carlo references"
    )
    parser.add_argument("--out", type=Path, default=None, help="the page (.md) to write")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    out = args.out if args.out is not None else default_output(DOCS, "kl_closed_forms", device)
    if args.threads:
        torch.set_num_threads(args.threads)
    failures = Failures()
    rows = run(device, args.size, 5 if args.quick else 15, failures, quick=args.quick)
    write_markdown(
        out,
        "Closed-form KL: probgen vs torch, pair by pair",
        [("", ["pair", "dtype", "probgen", "reference", "ratio", "≤ 2×"], rows)],
        env=environment(device),
        notes=(
            f"{args.size:,} parameter elements per distribution (multivariate and categorical "
            f"families: batch {args.size // EVENT:,} × event {EVENT}). Medians of interleaved "
            "rounds (probgen and the reference alternate, so both see the same load). Where "
            f"torch has no closed form, the reference is a {MC_SAMPLES}-sample Monte Carlo "
            "estimate (none for the same law in two encodings)."
            + (" Each call timed with CUDA events." if device.type == "cuda" else "")
            + (" Quick mode." if args.quick else "")
        ),
        failures=failures,
    )
    print(f"written to {out}", file=sys.stderr)
    return failures.exit_status()


if __name__ == "__main__":
    raise SystemExit(main())
