"""Checkpoints of a VAE training run: written atomically, loaded with checks.

A checkpoint is one ``torch.save`` file holding plain data only (tensors, numbers, strings,
lists, dicts), so it loads with ``torch.load(weights_only=True)``:

- ``format``, ``version``: what the file is;
- ``config``: the run's settings (a dict of :class:`probgen.vae.train.TrainConfig`);
- ``model``, ``optimizer``: the VAE's ``state_dict`` and the optimizer's state;
- ``torch_rng``, ``shuffle_rng``: the global torch RNG state and the state of the generator that
  shuffles the data (the training noise of a step is a function of the seed and the step,
  :mod:`probgen.vae.noise`, so it needs no state);
- ``epoch`` (epochs completed), ``step`` (optimizer steps so far), ``batch`` (next batch of the
  current epoch, 0 at an epoch boundary), ``order`` (that epoch's batch order, when mid-epoch),
  ``running`` (the epoch's running sums so far), ``metrics`` (rows of the epochs completed);
- ``world_size``: the number of processes that wrote it (informational: every field above is
  global, so any number of processes resumes it).

Writing goes to a temporary file in the same folder, flushed to disk, then ``os.replace``\\ d over
the target, so a crash or Ctrl-C while writing never leaves a truncated checkpoint.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "probgen-vae-checkpoint"
VERSION = 1
FILENAME = "checkpoint.pt"
_REQUIRED = (
    "config",
    "model",
    "optimizer",
    "torch_rng",
    "shuffle_rng",
    "epoch",
    "step",
    "batch",
    "metrics",
)


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or not a probgen VAE checkpoint."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises :class:`CheckpointError` (a ``ValueError``) naming the path when the file is missing,
    cannot be read (truncated, corrupt, not a torch file), or lacks the expected fields.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint to resume from: {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged files
        raise CheckpointError(
            f"checkpoint {path} is corrupt or unreadable ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a probgen VAE checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {path} has version {state.get('version')!r}; this probgen reads "
            f"version {VERSION}"
        )
    missing = [key for key in _REQUIRED if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: missing {missing}")
    return state
