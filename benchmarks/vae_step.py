"""Time of one VAE training step: Pyro SVI vs probgen's fast path vs hand-written PyTorch.

The same MLP VAE (64 → 400 → 200 → 2·16 encoder, 16 → 200 → 400 → 64 decoder, Binomial(16, p)
pixels, the ``probgen train-vae`` default) on the digits, one optimizer step (forward, backward,
Adam update) per call, at several batch sizes:

- ``Trace_ELBO + pyro.optim``: ``pyro.infer.SVI(model, guide, pyro.optim.Adam, Trace_ELBO())``,
  as in Pyro's tutorials (Pyro's validation on, its default);
- ``TraceMeanField_ELBO + pyro.optim``: the same with the analytic KL;
- ``probgen fast (meanfield)`` and ``probgen fast (trace)``: :class:`probgen.vae.step.Stepper`
  with ``engine="fast"``, exactly what ``probgen train-vae`` runs (it also reads the
  reconstruction and KL terms off the traces);
- ``hand-written PyTorch``: plain ``nn.Sequential`` encoder/decoder of the same sizes, the loss
  written out (reparameterized sample, Binomial log-likelihood, closed-form Gaussian KL) and
  ``torch.optim.Adam`` with its defaults; ``hand-written, fused Adam`` the same with
  ``fused=True`` (the optimizer the fast path uses).

All candidates run interleaved (A, B, C, …, A, B, C, …) and each one's median is reported, so the
ratios see the same machine load.

    python benchmarks/vae_step.py [--quick] [--device cpu|cuda] [--out PAGE.md]

Batch sizes 32, 128, 512, 1024, 4096 (``--quick``: 32 and 1024 on the CPU; all of them on a GPU,
where they take seconds). Writes ``docs/benchmarks/vae_step.md`` (CPU) or
``docs/benchmarks/gpu/vae_step.md`` (CUDA), or ``--out``, and the plot ``vae_step.png`` next to it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import pyro
import torch
import torch.nn.functional as F
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from torch import nn

import probgen  # noqa: F401  (registers the stable closed forms)
from probgen.benchmarking import (
    Failures,
    Panel,
    default_output,
    environment,
    measure_side_by_side,
    resolve_device,
    save_figure,
    write_markdown,
)
from probgen.vae.data import PIXEL_MAX, load_digits_split
from probgen.vae.model import VAE, mlp
from probgen.vae.step import Stepper

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks"
LATENT, HIDDEN, LR = 16, (400, 200), 1e-3
REFERENCE = "hand-written PyTorch"


class HandVAE(nn.Module):
    """The VAE's loss written directly in PyTorch: no Pyro, no distributions objects."""

    def __init__(self, data_dim: int, latent_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = mlp((data_dim, *hidden, 2 * latent_dim))
        self.decoder = mlp((latent_dim, *reversed(hidden), data_dim))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """−ELBO summed over the batch: −log Binomial(x | 16, σ(ℓ)) + KL(N(μ, σ²) ‖ N(0, 1))."""
        n = PIXEL_MAX
        loc, raw = self.encoder(x / n).split(self.latent_dim, dim=-1)
        scale = 1e-4 + F.softplus(raw)
        z = loc + scale * torch.randn_like(loc)
        logits = self.decoder(z)
        log_choose = math.lgamma(n + 1) - torch.lgamma(x + 1) - torch.lgamma(n - x + 1)
        log_px = (log_choose + x * logits - n * F.softplus(logits)).sum(-1)
        kl = (0.5 * (loc.square() + scale.square() - 1) - scale.log()).sum(-1)
        return (kl - log_px).sum()


def candidates(x: torch.Tensor, device: torch.device) -> dict[str, object]:
    pyro.clear_param_store()
    torch.manual_seed(0)
    # One VAE for all Pyro candidates: PyroModules of the same names share the param store.
    vae = VAE(x.shape[1], LATENT, HIDDEN, likelihood="binomial").to(device)
    svi_trace = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": LR}), Trace_ELBO())
    svi_mf = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": LR}), TraceMeanField_ELBO())
    fast_mf = Stepper(vae, "meanfield", "fast", LR)
    fast_trace = Stepper(vae, "trace", "fast", LR)
    hands = {}
    for fused in (False, True):
        hand = HandVAE(x.shape[1], LATENT, HIDDEN).to(device)
        opt = torch.optim.Adam(hand.parameters(), lr=LR, fused=fused or None)

        def step(hand=hand, opt=opt):
            loss = hand.loss(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return float(loss.detach())  # the loss is read every step, as a training loop does

        hands[fused] = step
    return {
        "Trace_ELBO + pyro.optim": lambda: svi_trace.step(x),
        "TraceMeanField_ELBO + pyro.optim": lambda: svi_mf.step(x),
        "probgen fast (meanfield)": lambda: fast_mf.step(x),
        "probgen fast (trace)": lambda: fast_trace.step(x),
        REFERENCE: hands[False],
        "hand-written, fused Adam": hands[True],
    }


def plot(path: Path, results: dict[int, dict[str, float]]) -> Path | None:
    """Time per step, and its ratio to the hand-written step, against the batch size."""
    batches = sorted(results)
    names = list(dict.fromkeys(name for r in results.values() for name in r))
    nan = float("nan")

    def line(value):
        return {
            name: (
                batches,
                [value(results[b], name) if name in results[b] else nan for b in batches],
            )
            for name in names
        }

    panels = [
        Panel(
            "Time of one step",
            "batch size",
            "ms / step",
            line(lambda r, name: r[name] * 1e3),
            logx=True,
            logy=True,
        ),
        Panel(
            f"Ratio to {REFERENCE}",
            "batch size",
            "time / hand-written time",
            line(lambda r, name: r[name] / r[REFERENCE] if REFERENCE in r else nan),
            logx=True,
            logy=True,
        ),
    ]
    return save_figure(path, panels, title="VAE training step")


def measure(all_x: torch.Tensor, batch: int, device: torch.device, rounds: int):
    """Each candidate's timing of ``steps`` optimizer steps at this batch size, and ``steps``."""
    # Batches larger than the data set repeat its rows.
    x = all_x[torch.arange(batch, device=device) % all_x.shape[0]]
    steps = max(3, 1280 // batch)  # about the same work per timing at every batch size
    fns = candidates(x, device)
    # Each timed call runs `steps` optimizer steps, so one timing is ≥ a few ms.
    timed = {name: (lambda f=f, n=steps: [f() for _ in range(n)]) for name, f in fns.items()}
    return measure_side_by_side(timed, device=device, warmup=2, rounds=rounds), steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="fewer batch sizes and rounds")
    parser.add_argument("--out", type=Path, default=None, help="the page (.md) to write")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: the machine is shared)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    out = args.out if args.out is not None else default_output(DOCS, "vae_step", device)
    data = load_digits_split("counts")
    all_x = torch.cat([data.train_x, data.test_x]).to(device)
    sizes = (32, 128, 512, 1024, 4096)
    if args.quick and device.type != "cuda":
        sizes = (32, 1024)
    rounds = 7 if args.quick else 11
    load_before = os.getloadavg()[0]
    failures = Failures()
    rows = []
    results: dict[int, dict[str, float]] = {}
    for batch in sizes:
        with failures.guard(f"batch {batch}"):
            result, steps = measure(all_x, batch, device, rounds)
            ref = result[REFERENCE].median
            results[batch] = {name: t.median / steps for name, t in result.items()}
            for name, t in result.items():
                per_step = t.median / steps
                rows.append(
                    [
                        batch,
                        name,
                        f"{per_step * 1e3:.3f}",
                        f"{t.median / ref:.2f}×",
                        f"{t.low / steps * 1e3:.3f}–{t.high / steps * 1e3:.3f}",
                    ]
                )
                ratio = t.median / ref
                print(f"batch {batch:5d}  {name:36s} {per_step * 1e3:8.3f} ms  {ratio:5.2f}×")
    load_after = os.getloadavg()[0]
    notes = (
        "One optimizer step (forward, backward, Adam) of the `probgen train-vae` default VAE "
        "(MLP 400/200, latent 16, Binomial(16, p)), median over interleaved rounds "
        f"({rounds} rounds of max(3, 1280 / batch) steps each"
        + (", each round timed with CUDA events" if device.type == "cuda" else "")
        + f"); ratio = time / `{REFERENCE}` measured in the same run. Range = fastest–slowest "
        "round. The machine may be shared: its "
        f"1-minute load average was {load_before:.1f} before and {load_after:.1f} after the run "
        f"({os.cpu_count()} cores), so absolute times are noisy; the ratios are the result."
        + (" Quick mode." if args.quick else "")
    )
    columns = ["batch", "step", "ms / step", f"ratio to {REFERENCE}", "range (ms)"]
    image = plot(out.with_suffix(".png"), results)
    path = write_markdown(
        out,
        "VAE training step: Pyro SVI, probgen's fast path, hand-written PyTorch",
        [("", columns, rows)],
        env=environment(device),
        notes=notes,
        images=[image],
        failures=failures,
    )
    print(f"wrote {path}", file=sys.stderr)
    return failures.exit_status()


if __name__ == "__main__":
    raise SystemExit(main())
