"""Encoder-gradient noise of the VAE loss: sampled KL (Trace_ELBO) vs analytic KL
(TraceMeanField_ELBO), single- and multi-particle, per unit of time.

On a fixed minibatch of the digits, the gradient of the loss with respect to the encoder's
parameters is drawn R times with independent noise. Reported per estimator: the time of one
gradient, the total variance tr Cov(g), the median over coordinates (those with a non-zero
gradient) of the signal-to-noise ratio |E g| / sd(g), and the variance × time product (the
variance reachable in a fixed time budget by averaging independent gradients; lower is better),
relative to TraceMeanField_ELBO with one particle. Measured at initialisation and after a
short training run.

    python benchmarks/elbo_gradients.py [--device cuda] [--quick] [--out PAGE.md]

Writes ``docs/benchmarks/elbo_gradients.md`` (CPU) or ``docs/benchmarks/gpu/elbo_gradients.md``
(CUDA), or ``--out``, and the bar chart ``elbo_gradients.png`` next to it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pyro
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from sklearn.datasets import load_digits

import probgen  # noqa: F401  (stable closed forms)
from probgen.benchmarking import (
    Failures,
    Panel,
    default_output,
    environment,
    resolve_device,
    save_figure,
    write_markdown,
)
from probgen.vae import VAE

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks"
REFERENCE = "TraceMeanField_ELBO (analytic KL), 1 particle"


def _estimators(particles: int):
    return {
        "Trace_ELBO (sampled KL), 1 particle": Trace_ELBO(),
        "TraceMeanField_ELBO (analytic KL), 1 particle": TraceMeanField_ELBO(),
        f"Trace_ELBO, {particles} particles": Trace_ELBO(
            num_particles=particles, vectorize_particles=True, max_plate_nesting=1
        ),
        f"TraceMeanField_ELBO, {particles} particles": TraceMeanField_ELBO(
            num_particles=particles, vectorize_particles=True, max_plate_nesting=1
        ),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gradient_stats(vae, x, elbo, replicates):
    """Median seconds of one gradient, tr Cov(g), and the median SNR over live coordinates."""
    params = list(vae.encoder.parameters())
    grads, times = [], []
    for r in range(replicates):
        pyro.set_rng_seed(1000 + r)
        _sync(x.device)
        t0 = time.perf_counter()
        loss = elbo.differentiable_loss(vae.model, vae.guide, x) / x.shape[0]
        g = torch.autograd.grad(loss, params)
        _sync(x.device)
        times.append(time.perf_counter() - t0)
        grads.append(torch.cat([gi.reshape(-1) for gi in g]))
    g = torch.stack(grads)
    mean, sd = g.mean(0), g.std(0)
    variance = sd.square().sum().item()
    live = sd > 0  # coordinates of dead ReLU units have exactly zero gradient: left out
    snr = (mean[live].abs() / sd[live]).median().item()
    return sorted(times)[len(times) // 2], variance, snr


def train(vae, data, steps, batch):
    """``steps`` Adam steps of TraceMeanField_ELBO on random minibatches of ``data``."""
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    elbo = TraceMeanField_ELBO()
    gen = torch.Generator().manual_seed(0)  # CPU indices, moved to the data's device
    for _ in range(steps):
        idx = torch.randint(0, data.shape[0], (batch,), generator=gen).to(data.device)
        loss = elbo.differentiable_loss(vae.model, vae.guide, data[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def plot(path, results):
    """Bars per estimator, grouped by state: variance and variance × time relative to the
    analytic 1-particle estimator, and the median SNR."""
    states = list(results)
    names = list(dict.fromkeys(name for r in results.values() for name in r))

    def bars(value):
        return {
            name: [value(results[s], name) if name in results[s] else float("nan") for s in states]
            for name in names
        }

    def rel(r, name, f):
        return f(r[name]) / f(r[REFERENCE]) if REFERENCE in r else float("nan")

    panels = [
        Panel(
            "tr Cov(g) vs analytic, 1 particle",
            "",
            "ratio",
            bars=bars(lambda r, name: rel(r, name, lambda v: v[1])),
            categories=states,
            logy=True,
        ),
        Panel(
            "variance × time vs analytic, 1 particle",
            "",
            "ratio",
            bars=bars(lambda r, name: rel(r, name, lambda v: v[1] * v[0])),
            categories=states,
            logy=True,
        ),
        Panel(
            "median SNR |E g| / sd(g)",
            "",
            "SNR",
            bars=bars(lambda r, name: r[name][2]),
            categories=states,
        ),
    ]
    return save_figure(path, panels, title="VAE encoder gradients", columns=3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="the page (.md) to write")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    out = args.out if args.out is not None else default_output(DOCS, "elbo_gradients", device)
    if args.threads:
        torch.set_num_threads(args.threads)
    replicates, train_steps, particles = (20, 150, 8) if args.quick else (60, 600, 8)

    torch.manual_seed(0)
    pyro.clear_param_store()
    data = torch.tensor(load_digits().data, dtype=torch.float32).to(device)
    x = data[torch.randperm(data.shape[0]).to(device)[:128]]
    vae = VAE(64, latent_dim=16, hidden=(400, 200)).to(device)

    failures = Failures()
    sections = []
    results: dict[str, dict[str, tuple[float, float, float]]] = {}
    for state in ("at initialisation", f"after {train_steps} training steps"):
        if state != "at initialisation":
            with failures.guard("training"):
                train(vae, data, train_steps, 128)
        results[state] = {}
        for name, elbo in _estimators(particles).items():
            with failures.guard(f"{state}, {name}"):
                results[state][name] = gradient_stats(vae, x, elbo, replicates)
        if REFERENCE not in results[state]:
            continue
        ref_t, ref_v, _ = results[state][REFERENCE]
        rows = []
        for name, (t, v, snr) in results[state].items():
            rows.append(
                [
                    name,
                    f"{t * 1e3:.2f} ms",
                    f"{v:.4g}",
                    f"{v / ref_v:.2f}",
                    f"{snr:.3g}",
                    f"{(v * t) / (ref_v * ref_t):.2f}",
                ]
            )
            print(state, *rows[-1], sep=" | ", flush=True)
        sections.append(
            (
                state.capitalize(),
                [
                    "estimator",
                    "time / gradient",
                    "tr Cov(g)",
                    "variance vs analytic",
                    "median SNR",
                    "variance × time vs analytic",
                ],
                rows,
            )
        )
    image = plot(out.with_suffix(".png"), results)
    write_markdown(
        out,
        "VAE encoder-gradient noise: sampled vs analytic KL",
        sections,
        env=environment(device),
        notes=(
            f"Digits (8×8, Binomial(16) likelihood), MLP 400/200, latent 16, one fixed minibatch "
            f"of 128, loss per example; {replicates} independent gradients per estimator. "
            "Multi-particle estimators are vectorized over particles."
            + (" Quick mode." if args.quick else "")
        ),
        images=[image],
        failures=failures,
    )
    print(f"written to {out}", file=sys.stderr)
    return failures.exit_status()


if __name__ == "__main__":
    raise SystemExit(main())
