"""``probgen train-vae``: train a VAE on scikit-learn's bundled digits with SVI."""

from __future__ import annotations

import argparse
import sys

NAME = "train-vae"
HELP = "train a VAE (Pyro model/guide) on the 8×8 digits; write metrics, plots, checkpoint, report"

# Defaults live in probgen.vae.train.TrainConfig; argparse defaults are None so that --resume can
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
    add("--engine", help="fast (differentiable_loss + one torch Adam) or svi (pyro SVI + "
        "pyro.optim.Adam); same objective (default fast)")  # fmt: skip
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
    add("--out", default="runs/vae", help="output folder (default runs/vae)")
    add("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    add("--no-progress", action="store_true", help="no progress bar")
    add("--no-plots", action="store_true", help="skip the PNG figures")


def _config(args: argparse.Namespace):
    from pathlib import Path

    from probgen.vae.checkpoint import FILENAME, load_checkpoint
    from probgen.vae.train import TrainConfig, resume_config

    given = {k: getattr(args, k) for k in _DEFAULTS if getattr(args, k) is not None}
    if args.resume:
        saved = load_checkpoint(Path(args.out) / FILENAME)
        return resume_config(saved["config"], given)
    return TrainConfig(**{**_DEFAULTS, **given})


def run(args: argparse.Namespace) -> int:
    import torch

    from probgen.vae.checkpoint import CheckpointError
    from probgen.vae.train import TrainingDiverged, TrainingInterrupted, train

    if args.threads < 1:
        print(
            f"probgen train-vae: error: --threads must be ≥ 1, got {args.threads}", file=sys.stderr
        )
        return 2
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        config = _config(args)
        result = train(
            config,
            args.out,
            resume=args.resume,
            device=args.device,
            progress=not args.no_progress,
            plots=not args.no_plots,
        )
    except (CheckpointError, TrainingDiverged, ValueError) as exc:
        print(f"probgen train-vae: error: {exc}", file=sys.stderr)
        return 1
    except TrainingInterrupted as exc:
        print(f"probgen train-vae: {exc}", file=sys.stderr)
        return 130
    finally:
        torch.set_num_threads(threads)
    final = result.final
    print(
        f"test ELBO {final['test_elbo']:.3f}  IWAE(K={final['iwae_samples']}) "
        f"{final['test_iwae']:.3f} nats per image; outputs in {result.out_dir}"
    )
    return 0
