"""``probgen check-kl``: audit every registered KL pair against independent references."""

from __future__ import annotations

import argparse

NAME = "check-kl"
HELP = "audit every registered KL pair (torch's, Pyro's, probgen's) in float32 and float64"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="FILE", help="also write the audit as JSON to FILE")
    parser.add_argument(
        "--torch",
        action="store_true",
        help="audit torch's own implementations, with probgen's overrides turned off",
    )
    parser.add_argument(
        "--pair",
        action="append",
        metavar="TEXT",
        help="only pairs whose name ('Gamma ‖ Gamma') contains TEXT; repeatable",
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "float64", "both"),
        default="both",
        help="dtype(s) to compute the KL in (default both)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the Monte Carlo checks")
    parser.add_argument(
        "--failures", action="store_true", help="print the failing points under the table"
    )


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    import time
    from pathlib import Path

    import torch

    if args.json and not Path(args.json).resolve().parent.is_dir():
        # Before the audit, not after it has run for a minute.
        print(
            f"probgen check-kl: error: --json {args.json}: no such directory "
            f"{str(Path(args.json).resolve().parent)!r}",
            file=sys.stderr,
        )
        return 2

    from probgen.checks.audit import audit_registry, format_table

    dtypes = {
        "float32": (torch.float32,),
        "float64": (torch.float64,),
        "both": (torch.float32, torch.float64),
    }[args.dtype]
    start = time.perf_counter()
    rows = audit_registry(dtypes, torch_only=args.torch, pairs=args.pair, seed=args.seed)
    elapsed = time.perf_counter() - start
    print(format_table(rows))
    bad = [r for r in rows if r.status != "pass"]
    pairs = len({r.pair for r in rows})
    print(
        f"\n{pairs} pairs, {len(rows)} pair×dtype rows, {len(bad)} not passing, "
        f"{elapsed:.1f} s ({'torch only' if args.torch else 'registry as imported'})"
    )
    if args.failures or bad:
        for r in bad:
            for line in r.failures:
                print(f"  {r.pair} [{r.dtype}] {line}")
    if args.json:
        payload = {
            "torch_only": args.torch,
            "torch_version": torch.__version__,
            "seconds": round(elapsed, 2),
            "rows": [r.as_dict() for r in rows],
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=1, ensure_ascii=False)
    if not rows:
        print("no registered pair matched")
        return 2
    return 1 if bad else 0
