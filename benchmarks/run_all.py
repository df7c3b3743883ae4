"""Run every benchmark in this folder, one after the other, and write their pages to docs/.

    python benchmarks/run_all.py [--quick] [--device cuda] [--out-dir DIR] [--only NAME ...]
                                 [--timeout SECONDS]

Each script runs in its own process (so one's allocations and threads do not disturb the next)
with the same ``--device`` and ``--quick``, and writes its Markdown table and PNG plots:

- by default into ``docs/benchmarks/`` for a CPU run and ``docs/benchmarks/gpu/`` for a CUDA run
  (a GPU run leaves the CPU tables alone);
- with ``--out-dir DIR``, into ``DIR/<name>.md`` (and ``DIR/<name>*.png``).

The checkout's root is put on ``PYTHONPATH`` of the scripts, so probgen need not be installed.
The wall time of each script is printed when it ends, and all of them at the end; a script that
fails (or outlives ``--timeout``) does not stop the others, and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCRIPTS = [
    "kl_normal_speed",
    "kl_closed_forms",
    "kl_kernels",
    "kl_analytic_vs_mc",
    "elbo_gradients",
    "vae_step",
]


def command(name: str, device: str, quick: bool, out_dir: Path | None) -> list[str]:
    """The command line that runs benchmark ``name``."""
    cmd = [sys.executable, str(HERE / f"{name}.py"), "--device", device]
    if quick:
        cmd.append("--quick")
    if out_dir is not None:
        cmd += ["--out", str(out_dir / f"{name}.md")]
    return cmd


def _environ() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", choices=SCRIPTS, default=SCRIPTS)
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="folder of the pages and plots (default: docs/benchmarks/, docs/benchmarks/gpu/ "
        "for CUDA)",
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds after which a script is stopped"
    )
    args = parser.parse_args(argv)
    out_dir = None if args.out_dir is None else args.out_dir.resolve()
    walls: dict[str, float] = {}
    failed: list[str] = []
    start = time.perf_counter()
    for name in args.only:
        cmd = command(name, args.device, args.quick, out_dir)
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        try:
            if subprocess.run(cmd, env=_environ(), timeout=args.timeout).returncode != 0:
                failed.append(name)
        except subprocess.TimeoutExpired:
            print(f"{name}: stopped after {args.timeout:.0f} s", file=sys.stderr, flush=True)
            failed.append(name)
        walls[name] = time.perf_counter() - t0
        print(
            f"== {name}: {walls[name]:.1f} s (suite so far {time.perf_counter() - start:.1f} s)",
            flush=True,
        )
    print("\n".join(f"{name:<20} {wall:7.1f} s" for name, wall in walls.items()))
    print(f"{'total':<20} {sum(walls.values()):7.1f} s")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
