"""What a VAE training run writes besides its checkpoint: metrics (CSV, JSON) and a report.

``metrics.csv``: one row per epoch (columns :data:`COLUMNS`; values per example, in nats).
``metrics.json``: ``{"config": …, "epochs": [rows], "final": {test_elbo, test_recon, test_kl,
test_iwae, iwae_samples, train_seconds} or null while training}``.
``report.md``: the settings, the final test ELBO and IWAE, and links to the figures.
"""

from __future__ import annotations

import csv
import json
import platform
from pathlib import Path
from typing import Any

import torch

#: Columns of ``metrics.csv``: recon = −E_q log p(x|z), kl = KL(q(z|x) ‖ p(z)), elbo = −recon
#: − kl (β = 1, no free bits); train_objective = the trained loss (β, free bits), running mean.
COLUMNS = (
    "epoch",
    "step",
    "beta",
    "train_objective",
    "train_elbo",
    "train_recon",
    "train_kl",
    "test_elbo",
    "test_recon",
    "test_kl",
    "test_iwae",
)


def write_metrics(
    out_dir: Path, config: Any, metrics: list[dict[str, float]], final: dict[str, float] | None
) -> None:
    """Write ``metrics.csv`` and ``metrics.json`` (``final`` fills the last row's IWAE)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for i, row in enumerate(metrics):
            last = final is not None and i == len(metrics) - 1
            writer.writerow({**row, "test_iwae": final["test_iwae"] if last else ""})
    payload = {"config": config.to_dict(), "epochs": metrics, "final": final}
    (out_dir / "metrics.json").write_text(json.dumps(payload, indent=2) + "\n")


def write_outputs(
    out_dir: Path,
    config: Any,
    metrics: list[dict[str, float]],
    final: dict[str, float],
    vae: Any,
    data: Any,
    device: str,
    *,
    plots: bool = True,
) -> None:
    """Write the metrics, the figures (unless ``plots`` is false) and ``report.md``."""
    from probgen.vae.data import PIXEL_MAX
    from probgen.vae.plots import write_plots

    write_metrics(out_dir, config, metrics, final)
    figures: list[Path] = []
    if plots:
        vmax = float(PIXEL_MAX) if config.encoding == "counts" else 1.0
        figures = write_plots(out_dir, metrics, vae, data, vmax, config.seed)
    (out_dir / "report.md").write_text(report_markdown(config, metrics, final, figures, device))


def report_markdown(
    config: Any,
    metrics: list[dict[str, float]],
    final: dict[str, float],
    figures: list[Path],
    device: str,
) -> str:
    """The Markdown text of ``report.md``."""
    settings = ", ".join(f"{k}={v}" for k, v in config.to_dict().items())
    lines = [
        "# VAE on the digits",
        "",
        f"Settings: {settings}; pixels encoded as {config.encoding!r}; device {device}.",
        "",
        f"Trained {len(metrics)} epochs ({metrics[-1]['step'] if metrics else 0} steps) in "
        f"{final['train_seconds']:.1f} s (this session) on {platform.machine()}, "
        f"torch {torch.__version__}.",
        "",
        "| test set (per image, nats) | value |",
        "|---|---|",
        f"| ELBO (analytic KL) | {final['test_elbo']:.3f} |",
        f"| reconstruction −E_q log p(x\\|z) | {final['test_recon']:.3f} |",
        f"| KL(q(z\\|x) ‖ p(z)) | {final['test_kl']:.3f} |",
        f"| IWAE, K = {final['iwae_samples']} | {final['test_iwae']:.3f} |",
        "",
        "ELBO and IWAE are lower bounds on log p(x) of the test images under the trained model "
        "(β = 1, no free bits, whatever the training objective), IWAE the tighter one.",
    ]
    if metrics:
        last = metrics[-1]
        lines += ["", f"Train set at the last epoch: ELBO {last['train_elbo']:.3f}."]
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{p.stem}]({p.name})" for p in figures]
    return "\n".join(lines) + "\n"
