"""Training a VAE with SVI: epochs, evaluation, checkpoints, resume, Ctrl-C, several processes.

:func:`train` runs ``config.epochs`` epochs of mini-batch steps (:class:`probgen.vae.step.Stepper`)
on the fixed train split of the digits (:func:`probgen.vae.data.load_digits_split`) or of a
user's data (:mod:`probgen.vae.training_data`). After every epoch it evaluates the ELBO on the
train and test sets and writes a checkpoint; at the end it estimates the test log-likelihood with
the IWAE bound and writes metrics, plots and a report.

Evaluated values are per example, in nats, with β = 1 and without free bits, whatever the
training objective, so they are bounds on log p(x) and comparable across settings:

    ELBO(x) = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)),     recon = −E_q[log p(x|z)],   kl = KL,

with the KL in closed form (``probgen.elbo.elbo_terms(method="analytic")``) and one z ~ q(z|x)
per example for the reconstruction term; IWAE(K) = log (1/K) Σ_k p(x, z_k)/q(z_k|x) ≥ ELBO.

Reproducibility: the data order comes from one ``torch.Generator`` seeded from ``config.seed``
and the reparameterization noise of step s from :func:`probgen.vae.noise.step_noise` (a
function of the seed, the step and the position in the global batch, not of any RNG state);
the generator's state, the optimizer state and the position in the epoch are saved in every
checkpoint, and evaluation runs under ``torch.random.fork_rng`` with its own seed. So a run
resumed from a checkpoint gives the same parameters and metrics as an uninterrupted one.

Several processes (:mod:`probgen.vae.distributed`, ``torchrun``): every process runs this loop
on its shard of each global batch with the same noise rows as one process would use; DDP
averages the gradients, so W processes follow the 1-process run to float rounding. Rank 0 alone
evaluates, shows progress and writes files; all processes stop at the same step on Ctrl-C.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from probgen.vae.checkpoint import FILENAME, load_checkpoint, save_checkpoint
from probgen.vae.config import TrainConfig, build_vae, resume_config
from probgen.vae.data import minibatches
from probgen.vae.distributed import Distributed, StopSignals, check_world_size
from probgen.vae.evaluate import evaluate, iwae
from probgen.vae.noise import step_noise
from probgen.vae.step import NonFiniteLossError, Stepper

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "TrainingInterrupted",
    "build_vae",
    "evaluate",
    "iwae",
    "resume_config",
    "train",
]

TERMS = ("elbo", "recon", "kl")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the epoch, the step and the term."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: a checkpoint was written first (its path is ``checkpoint``)."""

    def __init__(self, message: str, checkpoint: Path) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained VAE, the metric rows, the final test values.

    With several processes only rank 0 evaluates: elsewhere ``metrics`` and ``final`` are empty.
    ``data`` is the :mod:`probgen.vae.training_data` set trained on.
    """

    vae: Any
    metrics: list[dict[str, float]]
    final: dict[str, float]
    out_dir: Path
    data: Any = field(repr=False)


def train(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    device: str = "cpu",
    progress: bool = True,
    plots: bool = True,
    step_hook: Callable[[int, int], None] | None = None,
    data: Any = None,
    distributed: Distributed | None = None,
) -> TrainResult:
    """Train (or, with ``resume``, continue training) a VAE; write everything to ``out_dir``.

    ``data``: a user's data set instead of ``config.data`` or the digits (a path, an ``(N, …)``
    array or tensor, or :class:`probgen.vae.user_data.ArrayRows`); it is checked against the
    likelihood's support before any step. ``distributed``: this process's place in a
    multi-process run (:func:`probgen.vae.distributed.init_distributed`); default one process.
    ``step_hook(epoch, step)``, if given, is called after every optimizer step (epochs counted
    from 1, steps from 1). Raises :class:`TrainingDiverged` on a non-finite loss (the last good
    checkpoint is kept), :class:`TrainingInterrupted` after Ctrl-C (a checkpoint is written
    first), :class:`probgen.vae.checkpoint.CheckpointError` if ``resume`` finds no readable
    checkpoint, and ``ValueError`` for bad settings or data outside the likelihood's support.
    """
    import pyro

    from probgen.vae.schedules import kl_schedule
    from probgen.vae.training_data import training_set

    d = distributed if distributed is not None else Distributed()
    out_dir = Path(out_dir)
    ckpt_path = out_dir / FILENAME
    saved = load_checkpoint(ckpt_path) if resume else None
    if saved is not None:
        config = resume_config(saved["config"], config.to_dict())
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but CUDA is not available")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    check_world_size(config.batch_size, d.world_size)

    source = training_set(config, data, device)
    pyro.clear_param_store()
    torch.manual_seed(config.seed)
    vae = build_vae(config, source.data_dim).to(device)
    source.check(vae, d)
    schedule = kl_schedule(config.schedule, config.beta, config.warmup_steps, config.cycle_steps)
    stepper = Stepper(vae, config.elbo, config.engine, config.lr, distributed=d)
    shuffle = torch.Generator().manual_seed(config.seed)
    epoch, step, batch, order, running = 0, 0, 0, None, [0.0, 0.0, 0.0]
    metrics: list[dict[str, float]] = []
    if saved is not None:
        vae.load_state_dict(saved["model"])
        stepper.load_optimizer_state(saved["optimizer"])
        torch.set_rng_state(saved["torch_rng"])
        if device == "cuda" and "cuda_rng" in saved:
            torch.cuda.set_rng_state(saved["cuda_rng"])
        shuffle.set_state(saved["shuffle_rng"])
        epoch, step, batch = saved["epoch"], saved["step"], saved["batch"]
        order, running = saved.get("order"), list(saved.get("running", running))
        metrics = list(saved["metrics"])

    def state() -> dict[str, Any]:
        s = {
            "config": config.to_dict(),
            "model": vae.state_dict(),
            "optimizer": stepper.optimizer_state(),
            "torch_rng": torch.get_rng_state(),
            "shuffle_rng": shuffle.get_state(),
            "epoch": epoch,
            "step": step,
            "batch": batch,
            "order": order if batch else None,
            "running": running,
            "metrics": metrics,
            "world_size": d.world_size,
        }
        if device == "cuda":
            s["cuda_rng"] = torch.cuda.get_rng_state()
        return s

    n_train = source.n_train
    batches_per_epoch = math.ceil(n_train / config.batch_size)
    bar = _progress_bar(progress and d.is_main, config.epochs * batches_per_epoch, step)
    # With several processes torchrun stops its workers with SIGTERM: stop cleanly on it too.
    signals = (signal.SIGINT, signal.SIGTERM) if d.enabled else (signal.SIGINT,)
    started = time.perf_counter()
    try:
        with StopSignals(signals, escalate=not d.enabled) as sigint:
            while epoch < config.epochs:
                if batch == 0:
                    order = torch.cat(minibatches(n_train, config.batch_size, shuffle))
                    running = [0.0, 0.0, 0.0]
                assert order is not None
                batches = order.split(config.batch_size)
                while batch < len(batches):
                    rows = batches[batch]
                    x = source.train_batch(d.shard(rows))
                    noise = d.shard(step_noise(config.seed, step, len(rows), config.latent_dim))
                    try:
                        terms = stepper.step(x, schedule(step), noise=noise, stop=sigint.requested)
                    except NonFiniteLossError as exc:
                        raise _diverged(exc, epoch + 1, step + 1, metrics, ckpt_path) from None
                    batch, step = batch + 1, step + 1
                    running = [
                        running[0] + terms.loss,
                        running[1] + terms.recon,
                        running[2] + terms.kl,
                    ]
                    if bar is not None:
                        bar.update(1)
                        if step % 10 == 0 or batch == len(batches):
                            bar.set_postfix_str(
                                _postfix(epoch + 1, running, batch, batches), refresh=False
                            )
                    if step_hook is not None:
                        step_hook(epoch + 1, step)
                    # Several processes stop on the flag they agreed on in this step.
                    if terms.stop if d.enabled else sigint.requested:
                        raise _interrupted(state(), ckpt_path, epoch + 1, step, d)
                epoch, batch = epoch + 1, 0
                if d.is_main:
                    metrics.append(_epoch_row(vae, source, config, epoch, step, schedule, running))
                    save_checkpoint(state(), ckpt_path)
                    _write_metrics(out_dir, config, metrics, None)
                if not d.enabled and sigint.requested:
                    raise _interrupted(state(), ckpt_path, epoch, step, d)
    finally:
        stepper.close()
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - started
    final: dict[str, float] = {}
    if d.is_main:
        test_x = source.eval_x("test")
        final = {f"test_{k}": v for k, v in evaluate(vae, test_x, config.seed + epoch).items()}
        final["test_iwae"] = iwae(vae, test_x, config.iwae_samples, config.seed + 10**6)
        final["iwae_samples"] = config.iwae_samples
        final["train_seconds"] = seconds
        _write_outputs(out_dir, config, metrics, final, vae, source, device, plots)
    return TrainResult(vae, metrics if d.is_main else [], final, out_dir, source)


def _epoch_row(
    vae: Any, source: Any, config: TrainConfig, epoch: int, step: int, schedule: Any, running: Any
) -> dict[str, float]:
    row = {
        "epoch": epoch,
        "step": step,
        "beta": schedule(max(step - 1, 0)),
        "train_objective": running[0] / source.n_train,
    }
    for split in ("train", "test"):
        for key, value in evaluate(vae, source.eval_x(split), config.seed + epoch).items():
            row[f"{split}_{key}"] = value
    return row


def _write_metrics(out_dir: Path, config: TrainConfig, metrics: list[Any], final: Any) -> None:
    from probgen.vae.report import write_metrics

    write_metrics(out_dir, config, metrics, final)


def _write_outputs(
    out_dir: Path,
    config: TrainConfig,
    metrics: list[Any],
    final: dict[str, float],
    vae: Any,
    source: Any,
    device: str,
    plots: bool,
) -> None:
    """Metrics, figures and report; for a user's data the figures are the loss curves only
    (the image figures are drawn for the 8×8 digits)."""
    from probgen.vae.report import write_outputs

    if source.digits is not None:
        write_outputs(out_dir, config, metrics, final, vae, source.digits, device, plots=plots)
        return
    write_outputs(out_dir, config, metrics, final, vae, None, device, plots=False)
    report = out_dir / "report.md"
    text = report.read_text().replace("# VAE on the digits", f"# VAE on {source.source}", 1)
    text = text.replace(f"; pixels encoded as {config.encoding!r};", "; values as given;", 1)
    if plots and metrics:
        from probgen.vae.plots import plot_losses

        plot_losses(metrics, out_dir / "loss_curves.png")
        text += "\n## Figures\n\n![loss_curves](loss_curves.png)\n"
    report.write_text(text)


def _progress_bar(enabled: bool, total: int, initial: int) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, mininterval=0.5)


def _postfix(epoch: int, running: list[float], batch: int, batches: tuple[Tensor, ...]) -> str:
    n = sum(len(b) for b in batches[:batch])
    loss, recon, kl = (v / n for v in running)
    return f"epoch {epoch} elbo {-loss:.2f} recon {recon:.2f} kl {kl:.2f}"


def _diverged(
    exc: NonFiniteLossError, epoch: int, step: int, metrics: list[Any], ckpt_path: Path
) -> TrainingDiverged:
    kept = (
        f"the last good checkpoint (epoch {metrics[-1]['epoch']}) is kept at {ckpt_path}"
        if metrics and ckpt_path.is_file()
        else "no checkpoint was written before it"
    )
    return TrainingDiverged(
        f"training stopped: non-finite loss at epoch {epoch}, step {step}: {exc}; {kept}. "
        f"Try a smaller --lr."
    )


def _interrupted(
    state: dict[str, Any], ckpt_path: Path, epoch: int, step: int, d: Distributed
) -> TrainingInterrupted:
    if d.is_main:
        save_checkpoint(state, ckpt_path)
    return TrainingInterrupted(
        f"interrupted in epoch {epoch} after step {step}; checkpoint saved to {ckpt_path} "
        f"(continue with --resume)",
        ckpt_path,
    )
