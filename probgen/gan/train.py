"""Alternating GAN training on the bundled toys, with checkpoints that resume exactly.

Each step (Algorithm 1 of Goodfellow et al., 2014): ``d_steps`` discriminator updates on −V
(a real batch vs a detached generated batch), then one generator update on the chosen generator
loss (``"minimax"``: E[log(1 − D(G(z)))], ``"non-saturating"``: −E[log D(G(z))]). The per-step
V estimate is the one of the last discriminator batch, before its update.

The generator and discriminator are any ``nn.Module`` (PyroModules included): G maps
``(n, latent_dim)`` to ``(n, dim)``, D maps ``(n, dim)`` to logits ``(n, 1)`` or ``(n,)``.

Reproducibility: all randomness (initialization, data, latents) comes from the global torch RNG,
seeded once inside a ``fork_rng`` block; a checkpoint stores the models, both Adam states, the
RNG state and the history, so ``resume=True`` continues bit for bit as if never interrupted.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from probgen.gan.checks import check_label_smoothing
from probgen.gan.toys import Toy, get_toy
from probgen.gan.value import GENERATOR_LOSSES, discriminator_loss, generator_loss, value_estimate

__all__ = [
    "CHECKPOINT",
    "TrainConfig",
    "TrainState",
    "make_discriminator",
    "make_generator",
    "save_checkpoint",
    "train",
]

CHECKPOINT = "checkpoint.pt"
# Settings a resumed run must share with the run that wrote the checkpoint (steps may grow).
_FIXED = (
    "data",
    "loss",
    "batch_size",
    "lr",
    "seed",
    "latent_dim",
    "hidden",
    "label_smoothing",
    "d_steps",
)


@dataclass
class TrainConfig:
    """Settings of a training run (defaults: a short run on the ring)."""

    data: str = "ring"
    loss: str = "non-saturating"
    steps: int = 1500
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    latent_dim: int = 4
    hidden: int = 128
    label_smoothing: float = 0.0
    d_steps: int = 3
    checkpoint_every: int = 500

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting."""
        if self.loss not in GENERATOR_LOSSES:
            raise ValueError(f"loss must be one of {GENERATOR_LOSSES}, got {self.loss!r}")
        get_toy(self.data)
        for name in ("steps", "batch_size", "latent_dim", "hidden", "d_steps", "checkpoint_every"):
            value = getattr(self, name)
            low = 0 if name == "steps" else (2 if name == "batch_size" else 1)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer ≥ {low}, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        check_label_smoothing(self.label_smoothing)


@dataclass
class TrainState:
    """Models, optimizers, step reached and per-step history of a run."""

    config: TrainConfig
    toy: Toy
    generator: nn.Module
    discriminator: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def make_generator(latent_dim: int, dim: int, hidden: int = 128) -> nn.Module:
    """MLP generator: ``(n, latent_dim)`` → ``(n, dim)``, three hidden ReLU layers."""
    return nn.Sequential(
        nn.Linear(latent_dim, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, dim),
    )


def make_discriminator(dim: int, hidden: int = 128) -> nn.Module:
    """MLP discriminator: ``(n, dim)`` → logits ``(n, 1)`` (no final sigmoid)."""
    return nn.Sequential(
        nn.Linear(dim, hidden),
        nn.LeakyReLU(0.2),
        nn.Linear(hidden, hidden),
        nn.LeakyReLU(0.2),
        nn.Linear(hidden, 1),
    )


def _logits(discriminator: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = discriminator(x)
    return out.squeeze(-1) if out.dim() == 2 and out.shape[-1] == 1 else out


def _init_state(
    config: TrainConfig, generator: nn.Module | None, discriminator: nn.Module | None
) -> TrainState:
    toy = get_toy(config.data)
    g = (
        generator
        if generator is not None
        else make_generator(config.latent_dim, toy.dim, config.hidden)
    )
    d = discriminator if discriminator is not None else make_discriminator(toy.dim, config.hidden)
    betas = (0.5, 0.999)  # Radford et al. (2016), DCGAN
    opt_g = torch.optim.Adam(g.parameters(), lr=config.lr, betas=betas)
    opt_d = torch.optim.Adam(d.parameters(), lr=config.lr, betas=betas)
    return TrainState(config, toy, g, d, opt_g, opt_d)


def save_checkpoint(state: TrainState, path: Path) -> None:
    """Write the checkpoint atomically: to a temporary file beside ``path``, then rename."""
    payload = {
        "config": asdict(state.config),
        "step": state.step,
        "generator": state.generator.state_dict(),
        "discriminator": state.discriminator.state_dict(),
        "opt_g": state.opt_g.state_dict(),
        "opt_d": state.opt_d.state_dict(),
        "rng": torch.get_rng_state(),
        "history": state.history,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _load_checkpoint(state: TrainState, path: Path) -> None:
    payload = torch.load(path, weights_only=True)
    saved = payload["config"]
    for name in _FIXED:
        if saved[name] != getattr(state.config, name):
            raise ValueError(
                f"cannot resume from {path}: it was written with {name}={saved[name]!r}, "
                f"this run has {name}={getattr(state.config, name)!r}"
            )
    state.generator.load_state_dict(payload["generator"])
    state.discriminator.load_state_dict(payload["discriminator"])
    state.opt_g.load_state_dict(payload["opt_g"])
    state.opt_d.load_state_dict(payload["opt_d"])
    torch.set_rng_state(payload["rng"])
    state.step = int(payload["step"])
    state.history = list(payload["history"])


def _step(state: TrainState) -> dict[str, float]:
    cfg, g, d = state.config, state.generator, state.discriminator
    n = cfg.batch_size
    for _ in range(cfg.d_steps):
        real = state.toy.sample(n)
        with torch.no_grad():
            fake = g(torch.randn(n, cfg.latent_dim))
        real_logits, fake_logits = _logits(d, real), _logits(d, fake)
        v = value_estimate(real_logits, fake_logits, validate=False)
        d_loss = discriminator_loss(
            real_logits, fake_logits, label_smoothing=cfg.label_smoothing, validate=False
        )
        if not bool(torch.isfinite(d_loss)):
            raise FloatingPointError(
                f"training diverged at step {state.step}: discriminator loss {d_loss.item()}"
            )
        state.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        state.opt_d.step()

    g_logits = _logits(d, g(torch.randn(n, cfg.latent_dim)))
    g_loss = generator_loss(g_logits, cfg.loss, validate=False)  # type: ignore[arg-type]
    state.opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    state.opt_g.step()
    state.step += 1
    return {
        "step": state.step,
        "value": v.value.item(),
        "value_se": v.stderr.item(),
        "d_loss": d_loss.item(),
        "g_loss": g_loss.item(),
    }


def train(
    config: TrainConfig,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    resume: bool = False,
    generator: nn.Module | None = None,
    discriminator: nn.Module | None = None,
    progress: bool | None = False,
) -> TrainState:
    """Train for ``config.steps`` alternating steps in total; return the final state.

    Args:
        config: the settings.
        out_dir: where ``checkpoint.pt`` goes (every ``checkpoint_every`` steps and at the end),
            created if missing; ``None`` keeps everything in memory.
        resume: continue from ``out_dir/checkpoint.pt`` (``ValueError`` if a fixed setting
            differs); the result is identical to an uninterrupted run.
        generator, discriminator: modules to train instead of the default MLPs (their
            initialization is the caller's; with ``resume`` their weights are restored).
        progress: a tqdm progress bar (``None``: only on a terminal).

    Raises:
        FloatingPointError: when the discriminator loss is no longer finite.
    """
    config.validate()
    path = None if out_dir is None else Path(out_dir) / CHECKPOINT
    if resume and (path is None or not path.exists()):
        raise ValueError(f"resume=True needs an existing checkpoint, none at {path}")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        state = _init_state(config, generator, discriminator)
        if resume:
            assert path is not None
            _load_checkpoint(state, path)
        bar = None
        if progress is not False:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=config.steps,
                initial=state.step,
                disable=None if progress is None else False,  # None: only on a terminal
                unit="step",
            )
        try:
            while state.step < config.steps:
                row = _step(state)
                state.history.append(row)
                if bar is not None:
                    bar.update(1)
                    if state.step % 50 == 0:
                        bar.set_postfix(V=f"{row['value']:.3f}")
                if path is not None and state.step % config.checkpoint_every == 0:
                    save_checkpoint(state, path)
        finally:
            if bar is not None:
                bar.close()
        if path is not None:
            save_checkpoint(state, path)
    return state
