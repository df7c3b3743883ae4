"""What a training run measured: final metrics, and the per-step history as CSV and JSON."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import torch

from probgen.gan.kde import jsd_floor, jsd_to_samples
from probgen.gan.optimal import LOG_4
from probgen.gan.toys import mode_coverage
from probgen.gan.train import TrainState

__all__ = ["evaluate", "generate", "write_history"]

HISTORY_FIELDS = ("step", "value", "value_se", "d_loss", "g_loss")


def generate(state: TrainState, n: int, seed: int = 0) -> torch.Tensor:
    """n samples from the generator, shape ``(n, dim)``, from a private seeded RNG."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, state.config.latent_dim, generator=gen)
    with torch.no_grad():
        return state.generator(z).reshape(n, state.toy.dim)


def evaluate(state: TrainState, *, num_samples: int = 2000, seed: int = 0) -> dict:
    """Final metrics of a run (JSON-ready).

    * ``jsd``: JSD(p_data ‖ KDE of ``num_samples`` generated points) by Monte Carlo, with its
      standard error and the KDE bandwidth; ``jsd_floor``: the same estimator on data samples
      (what a perfect generator would score, see :mod:`probgen.gan.kde`).
    * ``mode_coverage``: modes with ≥ 5 % of samples within 3 std, out of ``num_modes``;
      ``high_quality``: fraction of samples within 3 std of some mode.
    * ``value_last``: mean of the per-step V estimates over the last 10 % of steps, with the
      standard error of that mean (from the per-step standard errors); ``None`` (with its
      standard error and ``jsd_lower_bound``) for a run of 0 steps.
    * ``jsd_lower_bound``: (value_last + log 4) / 2. Since V(D, G) ≤ V(D*, G) = −log 4 + 2 JSD
      for any D, the trained discriminator certifies at least this much JSD (approximately: D
      changes over those steps, and V is estimated).
    """
    samples = generate(state, num_samples, seed)
    est = jsd_to_samples(state.toy, samples, num_samples=num_samples, seed=seed)
    floor = jsd_floor(state.toy, num_samples, num_samples=num_samples, seed=seed)
    cov = mode_coverage(samples, state.toy)
    tail = state.history[-max(1, len(state.history) // 10) :]
    # No step, no V estimate: None (JSON null), never NaN.
    value_last = sum(r["value"] for r in tail) / len(tail) if tail else None
    value_last_se = math.sqrt(sum(r["value_se"] ** 2 for r in tail)) / len(tail) if tail else None
    return {
        "data": state.config.data,
        "loss": state.config.loss,
        "steps": state.step,
        "jsd": est.value,
        "jsd_se": est.stderr,
        "jsd_bandwidth": est.bandwidth,
        "jsd_floor": floor.value,
        "jsd_floor_se": floor.stderr,
        "jsd_method": "MC JSD against a Gaussian KDE of generated samples (held-out bandwidth)",
        "mode_coverage": cov.covered,
        "num_modes": int(state.toy.modes.shape[0]),
        "mode_fractions": [round(float(f), 4) for f in cov.fractions],
        "high_quality": cov.high_quality,
        "value_last": value_last,
        "value_last_se": value_last_se,
        "value_equilibrium": -LOG_4,
        "jsd_lower_bound": None if value_last is None else (value_last + LOG_4) / 2,
        "num_samples": num_samples,
    }


def write_history(history: list[dict[str, float]], out_dir: Path) -> tuple[Path, Path]:
    """Write ``history.csv`` and ``history.json`` (one row per step) into ``out_dir``."""
    csv_path, json_path = out_dir / "history.csv", out_dir / "history.json"
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows({k: row[k] for k in HISTORY_FIELDS} for row in history)
    json_path.write_text(json.dumps(history))
    return csv_path, json_path
