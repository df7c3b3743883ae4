"""Settings of a VAE training run, and how ``--resume`` reconciles them with a checkpoint.

:class:`TrainConfig` holds every option of ``probgen train-vae`` that shapes the training (a
checkpoint stores it); :func:`resume_config` is the saved config with a new number of epochs;
:func:`build_vae` makes the model a config describes. Data come from the bundled digits (encoded
for the likelihood, ``pixels``) or, with ``data``, from a user's ``.npy``/``.npz``/``.csv`` file
(:mod:`probgen.vae.user_data`), of which ``test_fraction`` is held out.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from probgen.vae.data import ENCODINGS, default_encoding
from probgen.vae.step import ELBOS, ENGINES

__all__ = ["TrainConfig", "build_vae", "resume_config"]


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
    data: str | None = None
    data_key: str | None = None
    test_fraction: float = 0.1

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
        if not (isinstance(self.test_fraction, int | float) and 0 <= self.test_fraction < 1):
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction!r}")
        if self.data is not None and self.pixels != "auto":
            raise ValueError(
                f"pixels={self.pixels!r} encodes the bundled digits; with data={self.data!r} "
                f"the values are used as given (leave pixels at 'auto')"
            )
        if self.data_key is not None and self.data is None:
            raise ValueError(f"data_key={self.data_key!r} needs data (a .npz file)")

    @property
    def encoding(self) -> str:
        """The digits' pixel encoding: ``pixels``, or the likelihood's default for ``"auto"``."""
        return default_encoding(self.likelihood) if self.pixels == "auto" else self.pixels

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for JSON and checkpoints)."""
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d


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
