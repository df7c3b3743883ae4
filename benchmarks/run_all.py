"""Run every benchmark in this folder, one after the other, and write their tables to docs/.

    python benchmarks/run_all.py [--quick] [--device cuda] [--only NAME ...]

Each script runs in its own process (so one's allocations and threads do not disturb the next)
with the same ``--device`` and ``--quick``; the wall time of each is printed at the end.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "kl_normal_speed",
    "kl_closed_forms",
    "kl_kernels",
    "kl_analytic_vs_mc",
    "elbo_gradients",
    "vae_step",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", choices=SCRIPTS, default=SCRIPTS)
    args = parser.parse_args()
    walls, failed = {}, []
    for name in args.only:
        cmd = [sys.executable, str(HERE / f"{name}.py"), "--device", args.device]
        if args.quick:
            cmd.append("--quick")
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        if subprocess.run(cmd).returncode != 0:
            failed.append(name)
        walls[name] = time.perf_counter() - t0
    print("\n".join(f"{name:<20} {wall:7.1f} s" for name, wall in walls.items()))
    print(f"{'total':<20} {sum(walls.values()):7.1f} s")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
