"""Training a VAE on the digits with SVI: epochs, evaluation, checkpoints, resume, Ctrl-C.

:func:`train` runs ``config.epochs`` epochs of mini-batch steps (:class:`probgen.vae.step.Stepper`)
on the fixed train split of :func:`probgen.vae.data.load_digits_split`. After every epoch it
evaluates the ELBO on the whole train and test sets and writes a checkpoint; at the end it
estimates the test log-likelihood with the IWAE bound and writes metrics, plots and a report.

Evaluated values are per example, in nats, with β = 1 and without free bits, whatever the
training objective, so they are bounds on log p(x) and comparable across settings:

    ELBO(x) = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)),     recon = −E_q[log p(x|z)],   kl = KL,

with the KL in closed form (``probgen.elbo.elbo_terms(method="analytic")``) and one z ~ q(z|x)
per example for the reconstruction term; IWAE(K) = log (1/K) Σ_k p(x, z_k)/q(z_k|x) ≥ ELBO.

Reproducibility: all randomness comes from the global torch RNG (Pyro's samples) and one
``torch.Generator`` (the data order), both seeded from ``config.seed`` and saved in every
checkpoint with the optimizer state and the position in the epoch; evaluation runs under
``torch.random.fork_rng`` with its own seed. So a run resumed from a checkpoint gives the same
parameters and metrics as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from probgen.vae.checkpoint import FILENAME, load_checkpoint, save_checkpoint
from probgen.vae.data import (
    ENCODINGS,
    DigitsSplit,
    default_encoding,
    load_digits_split,
    minibatches,
)
from probgen.vae.evaluate import evaluate, iwae
from probgen.vae.step import ELBOS, ENGINES, NonFiniteLossError, Stepper

TERMS = ("elbo", "recon", "kl")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of a training run (see ``probgen train-vae --help`` for each)."""

    likelihood: str = "binomial"
    pixels: str = "auto"
    elbo: str = "meanfield"
    engine: str = "fast"
    latent_dim: int = 16
    hidden: tuple[int, ...] = (400, 200)
    beta: float = 1.0
    schedule: str = "constant"
    warmup_steps: int = 1000
    cycle_steps: int = 1000
    free_bits: float | None = None
    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    iwae_samples: int = 100

    def __post_init__(self) -> None:
        from probgen.vae.likelihoods import LIKELIHOODS
        from probgen.vae.schedules import SCHEDULES

        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        for name, value, valid in (
            ("likelihood", self.likelihood, sorted(LIKELIHOODS)),
            ("pixels", self.pixels, ["auto", *ENCODINGS]),
            ("elbo", self.elbo, sorted(ELBOS)),
            ("engine", self.engine, list(ENGINES)),
            ("schedule", self.schedule, list(SCHEDULES)),
        ):
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}; valid names: {valid}")
        for name in ("latent_dim", "epochs", "batch_size", "iwae_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer ≥ 1, got {value!r}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden must be one or more sizes ≥ 1, got {self.hidden!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")

    @property
    def encoding(self) -> str:
        """The pixel encoding used: ``pixels``, or the likelihood's default for ``"auto"``."""
        return default_encoding(self.likelihood) if self.pixels == "auto" else self.pixels

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for JSON and checkpoints)."""
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the epoch, the step and the term."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: a checkpoint was written first (its path is ``checkpoint``)."""

    def __init__(self, message: str, checkpoint: Path) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained VAE, the metric rows, the final test values."""

    vae: Any
    metrics: list[dict[str, float]]
    final: dict[str, float]
    out_dir: Path
    data: DigitsSplit = field(repr=False)


def resume_config(saved: dict[str, Any], overrides: dict[str, Any]) -> TrainConfig:
    """The config of a resumed run: the checkpoint's, with ``epochs`` from ``overrides``.

    Any other option in ``overrides`` that is not ``None`` must equal the saved value (a resumed
    run continues the same training); otherwise ``ValueError`` names the options and values.
    """
    config = TrainConfig(**{**saved, "hidden": tuple(saved["hidden"])})
    changed = {}
    for key, value in overrides.items():
        if key == "epochs" or value is None:
            continue
        old = getattr(config, key)
        if (tuple(value) if key == "hidden" else value) != old:
            changed[key] = (value, old)
    if changed:
        what = ", ".join(f"{k}={new!r} (checkpoint: {old!r})" for k, (new, old) in changed.items())
        raise ValueError(
            f"--resume continues the saved run, but these options differ from its settings: {what}"
        )
    if overrides.get("epochs") is not None:
        config = dataclasses.replace(config, epochs=overrides["epochs"])
    return config


def build_vae(config: TrainConfig, data_dim: int) -> Any:
    """The VAE of ``config`` (fresh parameters drawn from the global torch RNG)."""
    from probgen.vae.model import VAE

    return VAE(
        data_dim,
        latent_dim=config.latent_dim,
        hidden=config.hidden,
        likelihood=config.likelihood,
        free_bits=config.free_bits,
    )


class _SigintGuard:
    """While active, Ctrl-C only sets ``requested``; the loop stops at the next step boundary
    (a second Ctrl-C interrupts at once). Inactive outside the main thread."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _SigintGuard:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def train(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    device: str = "cpu",
    progress: bool = True,
    plots: bool = True,
    step_hook: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train (or, with ``resume``, continue training) a VAE; write everything to ``out_dir``.

    ``step_hook(epoch, step)``, if given, is called after every optimizer step (epochs counted
    from 1, steps from 1). Raises :class:`TrainingDiverged` on a non-finite loss (the last good
    checkpoint is kept), :class:`TrainingInterrupted` after Ctrl-C (a checkpoint is written
    first), :class:`probgen.vae.checkpoint.CheckpointError` if ``resume`` finds no readable
    checkpoint, and ``ValueError`` for bad settings or data outside the likelihood's support.
    """
    import pyro

    from probgen.vae.report import write_metrics, write_outputs
    from probgen.vae.schedules import kl_schedule

    out_dir = Path(out_dir)
    ckpt_path = out_dir / FILENAME
    saved = load_checkpoint(ckpt_path) if resume else None
    if saved is not None:
        config = resume_config(saved["config"], config.to_dict())
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but CUDA is not available")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")

    data = load_digits_split(config.encoding)
    pyro.clear_param_store()
    torch.manual_seed(config.seed)
    vae = build_vae(config, data.data_dim).to(device)
    train_x, test_x = data.train_x.to(device), data.test_x.to(device)
    vae.check_data(train_x)
    vae.check_data(test_x)
    schedule = kl_schedule(config.schedule, config.beta, config.warmup_steps, config.cycle_steps)
    stepper = Stepper(vae, config.elbo, config.engine, config.lr)
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
        }
        if device == "cuda":
            s["cuda_rng"] = torch.cuda.get_rng_state()
        return s

    n_train = train_x.shape[0]
    batches_per_epoch = math.ceil(n_train / config.batch_size)
    bar = _progress_bar(progress, config.epochs * batches_per_epoch, step)
    started = time.perf_counter()
    try:
        with _SigintGuard() as sigint:
            while epoch < config.epochs:
                if batch == 0:
                    order = torch.cat(minibatches(n_train, config.batch_size, shuffle))
                    running = [0.0, 0.0, 0.0]
                assert order is not None
                batches = order.split(config.batch_size)
                while batch < len(batches):
                    x = train_x[batches[batch].to(device)]
                    try:
                        terms = stepper.step(x, schedule(step))
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
                    if sigint.requested:
                        raise _interrupted(state(), ckpt_path, epoch + 1, step)
                epoch, batch = epoch + 1, 0
                row = {
                    "epoch": epoch,
                    "step": step,
                    "beta": schedule(max(step - 1, 0)),
                    "train_objective": running[0] / n_train,
                }
                for split, x in (("train", train_x), ("test", test_x)):
                    for key, value in evaluate(vae, x, config.seed + epoch).items():
                        row[f"{split}_{key}"] = value
                metrics.append(row)
                save_checkpoint(state(), ckpt_path)
                write_metrics(out_dir, config, metrics, None)
                if sigint.requested:
                    raise _interrupted(state(), ckpt_path, epoch, step)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - started
    final = {f"test_{k}": v for k, v in evaluate(vae, test_x, config.seed + epoch).items()}
    final["test_iwae"] = iwae(vae, test_x, config.iwae_samples, config.seed + 10**6)
    final["iwae_samples"] = config.iwae_samples
    final["train_seconds"] = seconds
    write_outputs(out_dir, config, metrics, final, vae, data, device, plots=plots)
    return TrainResult(vae, metrics, final, out_dir, data)


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
    state: dict[str, Any], ckpt_path: Path, epoch: int, step: int
) -> TrainingInterrupted:
    save_checkpoint(state, ckpt_path)
    return TrainingInterrupted(
        f"interrupted in epoch {epoch} after step {step}; checkpoint saved to {ckpt_path} "
        f"(continue with --resume)",
        ckpt_path,
    )
