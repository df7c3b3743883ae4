"""Training throughput (examples/s) of the VAE step with 1, 2, … data-parallel processes (DDP).

Each configuration starts ``torchrun --standalone --nproc-per-node=W`` on this script's worker
mode; every process builds the ``probgen train-vae`` default VAE (MLP 400/200, latent 16,
Binomial(16, p) pixels, analytic KL), joins the process group (gloo on the CPU, NCCL on CUDA)
and runs :class:`probgen.vae.step.Stepper` steps exactly as ``train-vae`` does: its shard of a
global batch of B digits, the per-example noise of the step, DDP's gradient all-reduce, the
all-reduce of the loss terms, one fused Adam update. After warm-up steps, rank 0 times
``--steps`` steps (after a barrier, so all processes start together) and reports
B · steps / seconds. The global batch is the same for every W, so each process does B/W rows.

    python benchmarks/ddp_throughput.py [--nproc 1,2] [--batch 256,2048] [--steps 100]
    python benchmarks/ddp_throughput.py --device cuda --nproc 1,2,4,8 --batch 4096

On the CPU each process uses ``--threads`` threads (default 1, torchrun's own default); the
1-process run is also measured with W threads, the other way of using W cores. The machine's
load average is recorded before and after, as other work on a shared machine changes the result.
Writes ``docs/benchmarks/ddp_throughput.md`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks"


def worker(args: argparse.Namespace) -> None:
    """One process of a W-process run (started by torchrun)."""
    import pyro
    import torch

    import probgen  # noqa: F401  (registers the closed forms)
    from probgen.vae.data import load_digits_split
    from probgen.vae.distributed import init_distributed, shutdown
    from probgen.vae.noise import step_noise
    from probgen.vae.step import Stepper
    from probgen.vae.train import TrainConfig, build_vae

    args.batch = int(args.batch)
    torch.set_num_threads(args.threads)
    d = init_distributed(args.device, timeout_s=300)
    device = torch.device(f"cuda:{d.local_rank}" if args.device == "cuda" else "cpu")
    config = TrainConfig(batch_size=args.batch)
    digits = load_digits_split("counts").train_x
    reps = -(-args.batch // digits.shape[0])  # enough rows for one global batch
    x_all = digits.repeat(reps, 1)[: args.batch].to(device)
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = build_vae(config, x_all.shape[1]).to(device)
    stepper = Stepper(vae, config.elbo, "fast", config.lr, distributed=d)
    x = d.shard(x_all).contiguous()

    def run(steps: int, start: int) -> None:
        for s in range(start, start + steps):
            noise = d.shard(step_noise(0, s, args.batch, config.latent_dim)).to(device)
            stepper.step(x, 1.0, noise=noise)

    run(args.warmup, 0)
    if d.enabled:
        torch.distributed.barrier()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    run(args.steps, args.warmup)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    if d.is_main:
        result = {"seconds": seconds, "examples_per_s": args.batch * args.steps / seconds}
        Path(args.result).write_text(json.dumps(result))
    stepper.close()
    shutdown(d)


def measure(args: argparse.Namespace, nproc: int, threads: int, batch: int) -> dict[str, float]:
    """Run one W-process configuration under torchrun; returns rank 0's result."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd += [f"--nproc-per-node={nproc}", __file__, "--worker", "--result", str(result)]
        cmd += ["--device", args.device, "--batch", str(batch), "--steps", str(args.steps)]
        cmd += ["--warmup", str(args.warmup), "--threads", str(threads)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        proc = subprocess.run(cmd, timeout=args.timeout, env=env, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"{nproc} processes failed:\n{proc.stderr[-4000:]}")
        return json.loads(result.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nproc", default="1,2", help="process counts, e.g. 1,2,4 (default 1,2)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--batch", default="256,2048", help="global batches (default 256,2048)")
    parser.add_argument("--steps", type=int, default=100, help="timed steps (default 100)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps (default 20)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (default 3)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per configuration")
    parser.add_argument("--out", type=Path, default=DOCS / "ddp_throughput.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        from probgen.vae.distributed import exit_process

        worker(args)
        exit_process(0)

    import torch

    from probgen.benchmarking import environment, write_markdown

    counts = [int(n) for n in args.nproc.split(",")]
    batches = [int(b) for b in args.batch.split(",")]
    for n in counts:
        for b in batches:
            if b % n:
                parser.error(f"--batch {b} is not divisible by {n} processes")
    load_before = os.getloadavg()
    configs = [(n, args.threads) for n in counts]
    if args.device == "cpu" and max(counts) > 1:
        configs.insert(1, (1, max(counts) * args.threads))
    # Interleaved rounds (every configuration once per round), median per configuration: the
    # ratios then see the same machine load.
    rates: dict[tuple[int, int, int], list[float]] = {}
    for _ in range(args.rounds):
        for batch in batches:
            for nproc, threads in configs:
                rate = measure(args, nproc, threads, batch)["examples_per_s"]
                rates.setdefault((batch, nproc, threads), []).append(rate)
                print(f"batch {batch}, {nproc} × {threads}: {rate:,.0f} examples/s", flush=True)
    sections = []
    for batch in batches:
        base = statistics.median(rates[(batch, 1, args.threads)])
        rows = []
        for nproc, threads in configs:
            runs = rates[(batch, nproc, threads)]
            rate = statistics.median(runs)
            label = f"{nproc} × {threads} thread{'s' if threads > 1 else ''}"
            spread = f"{min(runs):,.0f} – {max(runs):,.0f}"
            rows.append([label, f"{batch // nproc}", f"{rate:,.0f}", spread, f"{rate / base:.2f}×"])
        sections.append((f"Global batch {batch}", rows))
    load_after = os.getloadavg()
    env = environment(args.device)
    env["threads"] = "per process, see the table"
    env["load average (1, 5, 15 min)"] = (
        f"before {', '.join(f'{v:.2f}' for v in load_before)}; "
        f"after {', '.join(f'{v:.2f}' for v in load_after)}"
    )
    backend = "NCCL" if args.device == "cuda" else "gloo"
    notes = (
        f"`probgen train-vae` default VAE, {args.steps} timed steps "
        f"after {args.warmup} warm-up steps, DDP over {backend}, torch {torch.__version__}. "
        f"Median of {args.rounds} interleaved rounds (range: slowest – fastest); speed-up "
        "relative to one process with one thread. Command: "
        f"`python benchmarks/ddp_throughput.py --device {args.device} --nproc {args.nproc} "
        f"--batch {args.batch} --steps {args.steps}`."
    )
    columns = [
        "processes × threads",
        "rows per process",
        "examples/s (median)",
        "range",
        "speed-up",
    ]
    path = write_markdown(
        args.out,
        "VAE training throughput with DDP",
        [(heading, columns, rows) for heading, rows in sections],
        env=env,
        notes=notes,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
