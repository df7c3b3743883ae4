"""One process of the multi-process tests in ``test_distributed.py`` (started by torchrun).

    python -m torch.distributed.run --standalone --nproc-per-node=2 _ddp_worker.py MODE OUT

MODE is one or more of (comma-separated):

``grads``: one training step of a 64-row global batch; rank 0 saves the (DDP-averaged)
gradients and the step's terms to ``OUT/grads.pt``.
``stop``: a short training run in ``OUT/stop`` in which rank 1 alone gets Ctrl-C (SIGINT) after
step 8; each rank writes what it raised to ``OUT/stop-RANK.txt``.
``support``: training on data with values outside the support in chunks of both ranks; each rank
writes what it raised to ``OUT/support-RANK.txt``.
``die``: a short training run in ``OUT/run`` in which rank 1 exits abruptly at step 8
(in epoch 2, after the checkpoint of epoch 1).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pyro
import torch

from probgen.vae.data import load_digits_split
from probgen.vae.distributed import exit_process, init_distributed, shutdown
from probgen.vae.noise import step_noise
from probgen.vae.step import Stepper
from probgen.vae.train import TrainConfig, TrainingInterrupted, build_vae, train

TINY = TrainConfig(latent_dim=2, hidden=(16,), batch_size=256, epochs=2, iwae_samples=5)
GRAD_ROWS, GRAD_BETA, GRAD_SEED = 64, 0.7, 11


def one_step(
    d, elbo: str, seed: int = GRAD_SEED
) -> tuple[dict[str, torch.Tensor], tuple[float, float, float]]:
    """Gradients and terms of one step on the first 64 digits (also used single-process)."""
    x = load_digits_split("counts").train_x[:GRAD_ROWS]
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = build_vae(TINY, x.shape[1])
    stepper = Stepper(vae, elbo, "fast", lr=1e-3, distributed=d)
    noise = step_noise(seed, 0, GRAD_ROWS, TINY.latent_dim)
    terms = stepper.step(d.shard(x), GRAD_BETA, noise=d.shard(noise))
    grads = {name: p.grad.clone() for name, p in vae.named_parameters()}
    stepper.close()
    return grads, (terms.loss, terms.recon, terms.kl)


def run_part(mode: str, d, out: Path) -> None:
    if mode == "grads":
        results = {elbo: one_step(d, elbo) for elbo in ("trace", "meanfield")}
        if d.is_main:
            torch.save(results, out / "grads.pt")
    elif mode == "stop":

        def interrupt(epoch: int, step: int) -> None:
            if d.rank == 1 and step == 8:
                os.kill(os.getpid(), signal.SIGINT)

        try:
            train(
                TINY, out / "stop", distributed=d, progress=False, plots=False, step_hook=interrupt
            )
            outcome = "finished"
        except TrainingInterrupted as exc:
            outcome = f"TrainingInterrupted: {exc}"
        (out / f"stop-{d.rank}.txt").write_text(outcome)
    elif mode == "support":
        import probgen.vae.user_data

        probgen.vae.user_data.CHUNK_ROWS = 64  # 10 chunks: rank 0 reads 0, 2, …; rank 1 1, 3, …
        x = load_digits_split("counts").train_x[:600].clone()
        x[100, 3] = 18.0  # chunk 1 (rank 1)
        x[530, 5] = 0.5  # chunk 8 (rank 0)
        try:
            train(TINY, out / "support", distributed=d, data=x, progress=False, plots=False)
            outcome = "finished"
        except ValueError as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        (out / f"support-{d.rank}.txt").write_text(outcome)
    elif mode == "die":

        def die(epoch: int, step: int) -> None:
            if d.rank == 1 and step == 8:  # epoch 2, after epoch 1's checkpoint
                os._exit(3)

        train(TINY, out / "run", distributed=d, progress=False, plots=False, step_hook=die)
    else:
        raise ValueError(f"unknown mode {mode!r}")


def main() -> None:
    mode, out = sys.argv[1], Path(sys.argv[2])
    d = init_distributed("cpu", timeout_s=30)
    try:
        for part in mode.split(","):
            run_part(part, d, out)
    finally:
        shutdown(d)


if __name__ == "__main__":
    main()
    exit_process(0)
