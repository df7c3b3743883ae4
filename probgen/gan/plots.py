"""PNG plots of a training run: samples over the data density, and V over training."""

from __future__ import annotations

from pathlib import Path

import torch

from probgen.gan.optimal import LOG_4
from probgen.gan.toys import Toy

__all__ = ["plot_samples", "plot_value"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_samples(toy: Toy, samples: torch.Tensor, path: Path, title: str = "") -> Path:
    """Generated ``samples`` (shape ``(n, dim)``) over the exact data density."""
    plt = _pyplot()
    lo, hi = toy.limits
    fig, ax = plt.subplots(figsize=(5, 5) if toy.dim == 2 else (6, 3.5))
    x = samples.detach().cpu()
    if toy.dim == 2:
        grid = torch.linspace(lo, hi, 300, dtype=toy.modes.dtype)
        gx, gy = torch.meshgrid(grid, grid, indexing="xy")
        density = toy.log_prob(torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)).exp()
        ax.contourf(gx, gy, density.reshape(gx.shape), levels=20, cmap="Blues")
        ax.scatter(x[:, 0], x[:, 1], s=2, c="tab:red", alpha=0.4, label="generated")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
    else:
        grid = torch.linspace(lo, hi, 1000, dtype=toy.modes.dtype)
        ax.plot(grid, toy.log_prob(grid[:, None]).exp(), color="tab:blue", label="data density")
        ax.hist(
            x[:, 0].clamp(lo, hi),
            bins=150,
            density=True,
            color="tab:red",
            alpha=0.5,
            label="generated",
        )
        ax.set_xlim(lo, hi)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title or f"{toy.name}: generated samples over the data density")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_value(history: list[dict[str, float]], path: Path, title: str = "") -> Path:
    """Per-step V estimate with ±2 standard errors, a moving average, and −log 4 (equilibrium)."""
    plt = _pyplot()
    steps = torch.tensor([r["step"] for r in history], dtype=torch.float64)
    value = torch.tensor([r["value"] for r in history], dtype=torch.float64)
    se = torch.tensor([r["value_se"] for r in history], dtype=torch.float64)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.fill_between(
        steps, value - 2 * se, value + 2 * se, color="tab:blue", alpha=0.15, label="±2 SE"
    )
    ax.plot(steps, value, color="tab:blue", lw=0.6, label="V estimate per step")
    width = max(1, len(history) // 50)
    if history and len(history) >= width:
        kernel = torch.ones(width, dtype=torch.float64) / width
        smooth = torch.nn.functional.conv1d(value[None, None], kernel[None, None])[0, 0]
        ax.plot(steps[width - 1 :], smooth, color="black", lw=1.2, label=f"mean of {width}")
    ax.axhline(-LOG_4, color="tab:green", ls="--", label="−log 4 (equilibrium)")
    ax.axhline(0.0, color="gray", ls=":", label="0 (D separates perfectly)")
    ax.set_xlabel("step")
    ax.set_ylabel("V(D, G)")
    ax.set_title(title or "GAN value over training")
    lowest = float((value - 2 * se).min()) if history else -LOG_4  # a run of 0 steps
    bottom = min(lowest, -LOG_4) - 0.1
    ax.set_ylim(bottom, 0.45)  # room above 0 for the legend
    ax.legend(loc="upper center", ncol=3, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
