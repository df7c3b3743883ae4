"""Data-parallel training: 2 gloo processes equal 1 process; bad set-ups fail fast and clearly.

The multi-process tests start ``torchrun --standalone`` (it picks a free port) on 2 processes with
a wall-clock timeout on every subprocess and a collective timeout inside; each does a few tiny
steps.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from probgen.vae.checkpoint import FILENAME, load_checkpoint
from probgen.vae.distributed import (
    Distributed,
    ELBOLossModule,
    StopSignals,
    check_world_size,
    init_distributed,
    torchrun_command,
)
from probgen.vae.train import TrainConfig, build_vae

WORKER = Path(__file__).with_name("_ddp_worker.py")
TIMEOUT_S = 240


def _worker_module():
    spec = importlib.util.spec_from_file_location("_ddp_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _torchrun(*args: str, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def test_world_size_must_divide_the_global_batch():
    check_world_size(256, 4)
    with pytest.raises(ValueError, match=r"batch_size 100 .* not divisible by the world size 3"):
        check_world_size(100, 3)


def test_shard_takes_every_world_size_th_row():
    batch = torch.arange(7)
    shards = [Distributed(rank=r, world_size=3).shard(batch).tolist() for r in range(3)]
    assert shards == [[0, 3, 6], [1, 4], [2, 5]]
    assert Distributed().shard(batch) is batch
    # The assignment of torch's DistributedSampler (unshuffled), which pads only when the batch
    # is not a multiple of the world size; here it is.
    from torch.utils.data import DistributedSampler

    for rank in range(4):
        sampler = DistributedSampler(range(12), num_replicas=4, rank=rank, shuffle=False)
        assert Distributed(rank=rank, world_size=4).shard(torch.arange(12)).tolist() == list(
            sampler
        )


def test_single_process_without_torchrun_environment(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    d = init_distributed("cpu")
    assert not d.enabled and d.is_main and d.world_size == 1
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match=r"\['MASTER_ADDR', 'MASTER_PORT', 'RANK'\] are not set"):
        init_distributed("cpu")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_missing_rendezvous_times_out_with_a_clear_message():
    # Rank 1 of 2 with nobody at the endpoint: an error after the 2 s timeout, not a hang.
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}
    env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    code = "from probgen.vae.distributed import init_distributed; init_distributed('cpu', 2)"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode != 0
    assert "rank 1 of 2 could not join the process group at 127.0.0.1:" in proc.stderr
    assert "within 2 s" in proc.stderr
    assert time.monotonic() - started < 60


def test_empty_shard_gives_zero_loss_and_gradients():
    vae = build_vae(TrainConfig(latent_dim=2, hidden=(8,)), 5)
    module = ELBOLossModule(vae, lambda x, w: pytest.fail("not called"), scale=2.0, num_terms=3)
    loss, *terms = module(torch.zeros(0, 5), 1.0)
    loss.backward()
    assert float(loss.detach()) == 0.0 and [float(t) for t in terms] == [0.0, 0.0, 0.0]
    assert all(p.grad is not None and not p.grad.any() for p in vae.parameters())


def test_stop_signals_escalate_only_for_one_process():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals((signal.SIGINT, signal.SIGTERM), escalate=False) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)  # torchrun forwards the terminal's Ctrl-C
        assert stop.requested
    assert signal.getsignal(signal.SIGTERM) is before
    with pytest.raises(KeyboardInterrupt), StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested
        os.kill(os.getpid(), signal.SIGINT)


def test_svi_engine_is_refused_with_several_processes():
    from probgen.vae.step import Stepper

    vae = build_vae(TrainConfig(latent_dim=2, hidden=(8,)), 5)
    with pytest.raises(ValueError, match="engine 'svi' runs in one process; with 2 processes use"):
        Stepper(vae, engine="svi", distributed=Distributed(rank=0, world_size=2))


def test_torchrun_command():
    cmd = torchrun_command(3, ["train-vae", "--epochs", "2"])
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=3"]
    assert cmd[-4:] == ["probgen", "train-vae", "--epochs", "2"]
    with pytest.raises(ValueError, match="nproc must be an integer ≥ 1, got 0"):
        torchrun_command(0, [])


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """One torchrun launch of 2 processes: a gradient step, a run stopped by Ctrl-C, data outside
    the support."""
    out = tmp_path_factory.mktemp("two")
    proc = _torchrun(str(WORKER), "grads,stop,support", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_two_process_step_has_the_single_process_gradients(two_processes):
    two = torch.load(two_processes / "grads.pt", weights_only=True)
    worker = _worker_module()
    for elbo in ("trace", "meanfield"):
        grads, terms = worker.one_step(Distributed(), elbo)
        grads2, terms2 = two[elbo]
        # Sums of 64 rows in another order (2 shards of 32, then DDP's mean of 2·sum): float32
        # rounding, relative ~1e-7 per addition; 1e-5 of the largest entry leaves a margin.
        torch.testing.assert_close(torch.tensor(terms2), torch.tensor(terms), rtol=1e-6, atol=0)
        for name, g in grads.items():
            scale = float(g.abs().max())
            torch.testing.assert_close(grads2[name], g, rtol=1e-5, atol=1e-6 * scale)
    # Other noise gives other gradients, far outside that tolerance: the check can fail.
    other, _ = worker.one_step(Distributed(), "trace", seed=worker.GRAD_SEED + 1)
    g = grads["decoder.0.weight"]
    assert not torch.allclose(
        other["decoder.0.weight"], g, rtol=1e-5, atol=1e-6 * float(g.abs().max())
    )


def test_two_process_run_equals_one_process_and_resumes_with_one(tmp_path, capsys):
    from probgen.cli import main
    from probgen.vae.train import train

    config = TrainConfig(latent_dim=2, hidden=(16,), batch_size=256, epochs=2, iwae_samples=5)
    args = ["--latent-dim", "2", "--hidden", "16", "--batch-size", "256", "--epochs", "2"]
    args += ["--iwae-samples", "5", "--no-progress", "--no-plots"]
    two = tmp_path / "two"
    assert main(["train-vae", *args, "--nproc", "2", "--out", str(two)]) == 0
    one = train(config, tmp_path / "one", progress=False, plots=False)
    saved = load_checkpoint(two / FILENAME)
    assert saved["epoch"] == 2 and saved["step"] == 12
    for name, value in one.vae.state_dict().items():
        # 12 Adam steps from gradients equal up to float32 summation order (measured: 1.5e-8).
        torch.testing.assert_close(saved["model"][name], value, rtol=1e-5, atol=1e-6)
    # The 2-process checkpoint continues in 1 process like an uninterrupted 1-process run.
    resumed = train(dataclasses.replace(config, epochs=3), two, resume=True, progress=False)
    full = train(dataclasses.replace(config, epochs=3), tmp_path / "full", progress=False)
    for name, value in full.vae.state_dict().items():
        torch.testing.assert_close(resumed.vae.state_dict()[name], value, rtol=1e-5, atol=1e-6)
    assert [r["epoch"] for r in resumed.metrics] == [1, 2, 3]


def test_ctrl_c_on_one_process_stops_all_at_the_same_step_and_resumes(two_processes, tmp_path):
    from probgen.vae.train import train

    # Rank 1 got SIGINT after step 8; both agreed on it in step 9's all-reduce and stopped.
    for rank in (0, 1):
        outcome = (two_processes / f"stop-{rank}.txt").read_text()
        assert outcome.startswith("TrainingInterrupted: interrupted in epoch 2 after step 9")
    saved = load_checkpoint(two_processes / "stop" / FILENAME)
    assert (saved["epoch"], saved["step"], saved["batch"]) == (1, 9, 3)
    worker = _worker_module()
    resumed = train(worker.TINY, two_processes / "stop", resume=True, progress=False, plots=False)
    full = train(worker.TINY, tmp_path, progress=False, plots=False)
    for name, value in full.vae.state_dict().items():
        torch.testing.assert_close(resumed.vae.state_dict()[name], value, rtol=1e-5, atol=1e-6)


def test_support_check_is_shared_and_names_the_first_bad_row_on_every_process(two_processes):
    # Row 100 (value 18, chunk 1) is the first bad row; rank 1 found it, rank 0 found row 530:
    # both report row 100, and nothing was trained or written.
    expected = "SupportError: value 18.0 at row 100, column 3 of data is outside the support"
    for rank in (0, 1):
        assert (two_processes / f"support-{rank}.txt").read_text().startswith(expected)
    assert not (two_processes / "support" / FILENAME).exists()


def test_a_rank_that_dies_stops_the_run_without_a_hang_or_a_torn_checkpoint(tmp_path):
    started = time.monotonic()
    proc = _torchrun(str(WORKER), "die", str(tmp_path))
    assert proc.returncode != 0
    assert time.monotonic() - started < TIMEOUT_S - 30
    assert "exitcode  : 3" in proc.stderr  # torchrun names the process that died
    # Rank 1 died in epoch 2: epoch 1's checkpoint is whole, and no temporary file is left.
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []
    assert load_checkpoint(run / FILENAME)["epoch"] == 1


def test_exit_process_flushes_and_keeps_the_status():
    code = (
        "import sys; from probgen.vae.distributed import exit_process; "
        "print('out', end=''); print('err', end='', file=sys.stderr); exit_process(3)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out", "err")
