"""Encoder-gradient noise of the VAE loss: sampled KL (Trace_ELBO) vs analytic KL
(TraceMeanField_ELBO), single- and multi-particle, per unit of time.

On a fixed minibatch of the digits, the gradient of the loss with respect to the encoder's
parameters is drawn R times with independent noise. Reported per estimator: the time of one
gradient, the total variance tr Cov(g), the median over coordinates (those with a non-zero
gradient) of the signal-to-noise ratio |E g| / sd(g), and the variance × time product (the
variance reachable in a fixed time budget by averaging independent gradients; lower is better),
relative to TraceMeanField_ELBO with one particle. Measured at initialisation and after a
short training run.

    python benchmarks/elbo_gradients.py [--device cuda] [--quick]

Writes ``docs/benchmarks/elbo_gradients.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyro
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from sklearn.datasets import load_digits

import probgen  # noqa: F401  (stable closed forms)
from probgen.benchmarking import environment, resolve_device, write_markdown
from probgen.vae import VAE

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks"


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


def gradient_stats(vae, x, elbo, replicates):
    params = list(vae.encoder.parameters())
    grads, times = [], []
    for r in range(replicates):
        pyro.set_rng_seed(1000 + r)
        t0 = time.perf_counter()
        loss = elbo.differentiable_loss(vae.model, vae.guide, x) / x.shape[0]
        g = torch.autograd.grad(loss, params)
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        grads.append(torch.cat([gi.reshape(-1) for gi in g]))
    g = torch.stack(grads)
    mean, sd = g.mean(0), g.std(0)
    variance = sd.square().sum().item()
    live = sd > 0  # coordinates of dead ReLU units have exactly zero gradient: left out
    snr = (mean[live].abs() / sd[live]).median().item()
    return sorted(times)[len(times) // 2], variance, snr


def train(vae, data, steps, batch, device):
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    elbo = TraceMeanField_ELBO()
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, data.shape[0], (batch,), generator=gen)
        loss = elbo.differentiable_loss(vae.model, vae.guide, data[idx].to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(DOCS / "elbo_gradients.md"))
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    replicates, train_steps, particles = (20, 150, 8) if args.quick else (60, 600, 8)

    torch.manual_seed(0)
    pyro.clear_param_store()
    data = torch.tensor(load_digits().data, dtype=torch.float32)
    x = data[torch.randperm(data.shape[0])[:128]].to(device)
    vae = VAE(64, latent_dim=16, hidden=(400, 200)).to(device)

    sections = []
    for state in ("at initialisation", f"after {train_steps} training steps"):
        if state != "at initialisation":
            train(vae, data, train_steps, 128, device)
        results = {
            name: gradient_stats(vae, x, elbo, replicates)
            for name, elbo in _estimators(particles).items()
        }
        ref_t, ref_v, _ = results["TraceMeanField_ELBO (analytic KL), 1 particle"]
        rows = []
        for name, (t, v, snr) in results.items():
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
    write_markdown(
        args.out,
        "VAE encoder-gradient noise: sampled vs analytic KL",
        sections,
        env=environment(device),
        notes=(
            f"Digits (8×8, Binomial(16) likelihood), MLP 400/200, latent 16, one fixed minibatch "
            f"of 128, loss per example; {replicates} independent gradients per estimator. "
            "Multi-particle estimators are vectorized over particles."
        ),
    )


if __name__ == "__main__":
    main()
