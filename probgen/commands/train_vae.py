"""``probgen train-vae``: train a VAE with SVI on the bundled digits or your own data, in one or
several processes (``--nproc N`` or ``torchrun``; see docs/scale_out.md)."""

from __future__ import annotations

import argparse
import os
import sys

NAME = "train-vae"
HELP = (
    "train a VAE (Pyro model/guide) on the 8×8 digits or your data, in one or several processes; "
    "write metrics, plots, checkpoint, report"
)

# Mirrors probgen.vae.distributed.DEFAULT_TIMEOUT_S (kept in sync by a test; no torch import here).
DEFAULT_TIMEOUT_S = 600.0
# Defaults live in probgen.vae.config.TrainConfig; argparse defaults are None so that --resume can
# tell the options given on the command line from the saved ones. Kept in sync by a test.
_DEFAULTS = {
    "likelihood": "binomial",
    "pixels": "auto",
    "elbo": "meanfield",
    "engine": "fast",
    "latent_dim": 16,
    "hidden": (400, 200),
    "beta": 1.0,
    "schedule": "constant",
    "warmup_steps": 1000,
    "cycle_steps": 1000,
    "free_bits": None,
    "epochs": 200,
    "batch_size": 128,
    "lr": 1e-3,
    "seed": 0,
    "iwae_samples": 100,
    "data": None,
    "data_key": None,
    "test_fraction": 0.1,
}
_LIKELIHOODS = (
    "binomial",
    "bernoulli",
    "categorical",
    "continuous_bernoulli",
    "gaussian",
    "gaussian_learned",
    "laplace",
)


def _hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--hidden must be sizes like 400,200, got {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--hidden sizes must be ≥ 1, got {text!r}")
    return sizes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = _DEFAULTS
    add = parser.add_argument
    add("--likelihood", help=f"p(x|z) per pixel, one of {', '.join(_LIKELIHOODS)} "
        "(default binomial: Binomial(16, p) on the raw counts 0…16)")  # fmt: skip
    add("--pixels", help="pixel encoding: auto (the likelihood's own), counts (0…16), binary "
        "(count > 8), unit (count / 16) (default auto)")  # fmt: skip
    add("--elbo", help="meanfield (analytic KL, TraceMeanField_ELBO) or trace (sampled KL, "
        "Trace_ELBO) (default meanfield)")  # fmt: skip
    add("--engine", help="fast (probgen's ELBO from the Pyro traces + one torch Adam) or svi "
        "(pyro SVI + pyro.optim.Adam); same objective (default fast)")  # fmt: skip
    add("--latent-dim", type=int, help=f"latent dimension (default {d['latent_dim']})")
    add("--hidden", type=_hidden, help="encoder hidden sizes, decoder reversed (default 400,200)")
    add("--beta", type=float, help="KL weight β (default 1)")
    add("--schedule", help="β schedule: constant, linear (warm-up) or cyclical (default constant)")
    add(
        "--warmup-steps",
        type=int,
        help=f"steps of the linear warm-up (default {d['warmup_steps']})",
    )
    add("--cycle-steps", type=int, help=f"steps per cycle, cyclical (default {d['cycle_steps']})")
    add("--free-bits", type=float, help="KL floor per latent dimension, nats (default none)")
    add("--epochs", type=int, help=f"epochs in all, also with --resume (default {d['epochs']})")
    add("--batch-size", type=int, help=f"mini-batch size (default {d['batch_size']})")
    add("--lr", type=float, help=f"Adam learning rate (default {d['lr']})")
    add(
        "--seed",
        type=int,
        help=f"seed of initialization, data order and samples (default {d['seed']})",
    )
    add("--iwae-samples", type=int, help=f"K of the final test IWAE (default {d['iwae_samples']})")
    add("--device", default="cpu", choices=("cpu", "cuda"), help="device (default cpu)")
    add(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: faster for this small MLP than several threads "
        "competing for a shared CPU)",
    )
    add("--data", help="your data instead of the digits: FILE.npy (memory-mapped), FILE.npz:KEY "
        "or FILE.csv, N examples (each flattened to one row)")  # fmt: skip
    add("--data-key", help="name of the array in a .npz file (or FILE.npz:KEY)")
    add("--test-fraction", type=float, help="share of --data rows held out for testing "
        f"(default {d['test_fraction']})")  # fmt: skip
    add("--nproc", type=int, help="train in N processes on this machine (DDP, started with "
        "torchrun; one GPU each with --device cuda); under torchrun leave it out")  # fmt: skip
    add(
        "--dist-timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help="seconds to wait for the other processes at start-up and at every step "
        f"(default {DEFAULT_TIMEOUT_S:g})",
    )
    add("--out", default="runs/vae", help="output folder (default runs/vae)")
    add("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    add("--no-progress", action="store_true", help="no progress bar")
    add("--no-plots", action="store_true", help="skip the PNG figures")


def _config(args: argparse.Namespace):
    from pathlib import Path

    from probgen.vae.checkpoint import FILENAME, load_checkpoint
    from probgen.vae.config import TrainConfig, resume_config

    given = {k: getattr(args, k) for k in _DEFAULTS if getattr(args, k) is not None}
    if args.resume:
        saved = load_checkpoint(Path(args.out) / FILENAME)
        return resume_config(saved["config"], given)
    return TrainConfig(**{**_DEFAULTS, **given})


def forwarded_argv(args: argparse.Namespace) -> list[str]:
    """The ``probgen`` arguments that repeat this command in each process of ``--nproc``."""
    argv = ["train-vae"]
    for key in _DEFAULTS:
        value = getattr(args, key)
        if value is not None:
            text = ",".join(map(str, value)) if key == "hidden" else str(value)
            argv += [f"--{key.replace('_', '-')}", text]
    argv += ["--device", args.device, "--threads", str(args.threads), "--out", args.out]
    argv += ["--dist-timeout", repr(args.dist_timeout)]
    argv += [
        f"--{k.replace('_', '-')}"
        for k in ("resume", "no_progress", "no_plots")
        if getattr(args, k)
    ]
    return argv


def _error(message: str) -> int:
    print(f"probgen train-vae: error: {message}", file=sys.stderr)
    return 1


def _launch(args: argparse.Namespace) -> int:
    """``--nproc N``: check the settings here, then run this command in N processes."""
    from probgen.vae.checkpoint import CheckpointError
    from probgen.vae.distributed import check_world_size, launch

    if "WORLD_SIZE" in os.environ:
        return _error("--nproc starts torchrun itself; under torchrun leave --nproc out")
    try:
        check_world_size(_config(args).batch_size, args.nproc)
    except (CheckpointError, ValueError) as exc:
        return _error(str(exc))
    return launch(args.nproc, forwarded_argv(args))


def run(args: argparse.Namespace) -> int:
    for name in ("threads", "nproc"):
        value = getattr(args, name)
        if value is not None and value < 1:
            print(f"probgen train-vae: error: --{name} must be ≥ 1, got {value}", file=sys.stderr)
            return 2
    if not args.dist_timeout > 0:
        print(f"probgen train-vae: error: --dist-timeout must be > 0, got {args.dist_timeout}",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.nproc is not None and args.nproc > 1:
        return _launch(args)
    return _train(args)


def _train(args: argparse.Namespace) -> int:
    import torch

    from probgen.vae.checkpoint import CheckpointError
    from probgen.vae.distributed import DistributedError, init_distributed, shutdown
    from probgen.vae.train import TrainingDiverged, TrainingInterrupted, train

    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        d = init_distributed(args.device, args.dist_timeout)
    except (DistributedError, ValueError) as exc:
        torch.set_num_threads(threads)
        return _error(str(exc))
    try:
        config = _config(args)
        result = train(
            config,
            args.out,
            resume=args.resume,
            device=args.device,
            progress=not args.no_progress,
            plots=not args.no_plots,
            distributed=d,
        )
    except DistributedError as exc:  # names this process's rank
        return _error(str(exc))
    except (CheckpointError, TrainingDiverged, ValueError) as exc:
        # The same on every process: reported once.
        return _error(str(exc)) if d.is_main else 1
    except TrainingInterrupted as exc:
        if d.is_main:
            print(f"probgen train-vae: {exc}", file=sys.stderr)
        return 130
    finally:
        torch.set_num_threads(threads)
        shutdown(d)
    if not d.is_main:
        return 0
    final = result.final
    print(
        f"test ELBO {final['test_elbo']:.3f}  IWAE(K={final['iwae_samples']}) "
        f"{final['test_iwae']:.3f} nats per image; outputs in {result.out_dir}"
    )
    return 0
