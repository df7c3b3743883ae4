"""PNG figures of a VAE training run (matplotlib, no display needed).

- ``loss_curves.png``: train and test ELBO, reconstruction term and KL per example vs epoch;
- ``reconstructions.png``: test images (top row) above their reconstructions (bottom row), the
  mean of p(x | z) at the posterior mean z = μ(x);
- ``samples.png``: means of p(x | z) for z drawn from the prior N(0, I);
- ``latent.png`` (latent dimension 2 only): μ(x) of the test images, coloured by digit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def decoder_mean(vae: Any, z: Tensor) -> Tensor:
    """Mean of p(x | z) per pixel, ``(N, D)`` from latents ``(N, L)``.

    A categorical pixel's mean is Σ_v v·p(v) over its values v = 0 … L − 1.
    """
    from torch.distributions import Categorical, Independent

    dist = vae.likelihood.distribution(vae.decode(z))
    base = dist.base_dist if isinstance(dist, Independent) else dist
    if isinstance(base, Categorical):
        values = torch.arange(base.probs.shape[-1], dtype=base.probs.dtype, device=z.device)
        return (base.probs * values).sum(-1)
    return dist.mean


def _image_grid(plt: Any, rows: list[Tensor], titles: list[str], vmax: float, path: Path) -> None:
    ncols = rows[0].shape[0]
    fig, axes = plt.subplots(len(rows), ncols, figsize=(ncols * 0.9, len(rows) * 1.0 + 0.3))
    for r, (images, title) in enumerate(zip(rows, titles, strict=True)):
        for c in range(ncols):
            ax = axes[r, c] if len(rows) > 1 else axes[c]
            ax.imshow(images[c].reshape(8, 8).cpu().numpy(), cmap="gray_r", vmin=0, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
        first = axes[r, 0] if len(rows) > 1 else axes[0]
        first.set_ylabel(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_losses(metrics: list[dict[str, float]], path: Path) -> None:
    """Three panels (ELBO, recon, KL per example, nats) of train and test values vs epoch."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in metrics]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    labels = {"elbo": "ELBO", "recon": "recon  −E log p(x|z)", "kl": "KL(q(z|x) ‖ p(z))"}
    for ax, (term, label) in zip(axes, labels.items(), strict=True):
        for split in ("train", "test"):
            ax.plot(epochs, [row[f"{split}_{term}"] for row in metrics], label=split)
        ax.set_title(f"{label} (nats / example)", fontsize=9)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@torch.no_grad()
def write_plots(
    out_dir: Path, metrics: list[dict[str, float]], vae: Any, data: Any, vmax: float, seed: int
) -> list[Path]:
    """Write the figures listed in the module docstring; returns their paths.

    ``vmax`` is the largest pixel value of the encoding (16 for counts, 1 otherwise); ``seed``
    seeds the prior samples (under ``fork_rng``, so training randomness is untouched).
    """
    plt = _pyplot()
    device = next(vae.parameters()).device
    paths = []
    if metrics:
        paths.append(out_dir / "loss_curves.png")
        plot_losses(metrics, paths[-1])
    x = data.test_x[:10].to(device)
    loc, _ = vae.encode(x)
    paths.append(out_dir / "reconstructions.png")
    _image_grid(plt, [x, decoder_mean(vae, loc)], ["input", "reconstruction"], vmax, paths[-1])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        z = torch.randn(20, vae.latent_dim).to(device)
    means = decoder_mean(vae, z)
    paths.append(out_dir / "samples.png")
    _image_grid(plt, [means[:10], means[10:]], ["prior", "samples"], vmax, paths[-1])
    if vae.latent_dim == 2:
        loc, _ = vae.encode(data.test_x.to(device))
        fig, ax = plt.subplots(figsize=(5, 4.5))
        xy, labels = loc.cpu().numpy(), data.test_y.numpy()
        points = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", s=8, vmin=-0.5, vmax=9.5)
        fig.colorbar(points, ax=ax, ticks=range(10), label="digit")
        ax.set_xlabel("μ₁(x)")
        ax.set_ylabel("μ₂(x)")
        ax.set_title("test images in latent space (posterior means)", fontsize=9)
        fig.tight_layout()
        paths.append(out_dir / "latent.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths
