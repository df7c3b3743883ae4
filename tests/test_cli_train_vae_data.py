"""``probgen train-vae --data`` and ``--nproc``: users' files, bad input, forwarded arguments."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from probgen.cli import main
from probgen.commands import train_vae
from probgen.vae.distributed import DEFAULT_TIMEOUT_S

TINY = ["--epochs", "1", "--latent-dim", "2", "--hidden", "16", "--batch-size", "100"]
TINY += ["--iwae-samples", "3", "--no-progress", "--no-plots"]


@pytest.fixture
def counts():
    """300 rows of 12 integer counts in 0…16 (Binomial(16, p) data)."""
    return np.random.default_rng(0).integers(0, 17, size=(300, 3, 4)).astype(np.int16)


def test_npz_key_and_csv(tmp_path, capsys, counts):
    npz, csv = tmp_path / "d.npz", tmp_path / "d.csv"
    np.savez(npz, x=counts, y=np.arange(300))
    np.savetxt(csv, counts.reshape(300, 12), delimiter=",", fmt="%d")
    for i, data in enumerate(([f"--data={npz}:x"], ["--data", str(npz), "--data-key", "x"])):
        out = tmp_path / f"run{i}"
        assert main(["train-vae", *TINY, *data, "--out", str(out)]) == 0
        assert "test ELBO" in capsys.readouterr().out
        saved = json.loads((out / "metrics.json").read_text())
        assert (saved["config"]["data"], saved["config"]["data_key"]) == (
            (f"{npz}:x", None) if i == 0 else (str(npz), "x")
        )
        assert len(saved["epochs"]) == 1
    assert main(["train-vae", *TINY, "--data", str(csv), "--out", str(tmp_path / "c")]) == 0
    # The same 300×12 values from either file: the same run, the same metrics.
    a = json.loads((tmp_path / "run1" / "metrics.json").read_text())["epochs"]
    b = json.loads((tmp_path / "c" / "metrics.json").read_text())["epochs"]
    assert a == b


@pytest.mark.parametrize(
    ("make", "option", "message"),
    [
        ("outside", [], "value 17.0 at row 123, column 7 of"),
        ("npz", [], "holds 2 arrays ['a', 'b']: name one with"),
        ("outside", ["--pixels", "counts"], "pixels='counts' encodes the bundled digits"),
        ("outside", ["--nproc", "3"], "batch_size 100 (the global batch) is not divisible by"),
    ],
)
def test_bad_data_is_reported_before_training(tmp_path, capsys, counts, make, option, message):
    if make == "outside":
        counts[123, 1, 3] = 17  # column 1·4 + 3 = 7
        path = tmp_path / "x.npy"
        np.save(path, counts)
    else:
        path = tmp_path / "x.npz"
        np.savez(path, a=counts, b=counts)
    out = tmp_path / "run"
    assert main(["train-vae", *TINY, "--data", str(path), "--out", str(out), *option]) == 1
    assert message in capsys.readouterr().err
    assert not (out / "checkpoint.pt").exists()


def test_forwarded_arguments_repeat_the_command():
    parser = argparse.ArgumentParser()
    train_vae.add_arguments(parser)
    argv = [*TINY, "--data", "d.npz:x", "--lr", "0.003", "--free-bits", "0.5", "--resume"]
    argv += ["--nproc", "2", "--dist-timeout", "30", "--threads", "2", "--out", "o"]
    args = parser.parse_args(argv)
    forwarded = train_vae.forwarded_argv(args)
    assert forwarded[0] == "train-vae" and "--nproc" not in forwarded
    again = parser.parse_args(forwarded[1:])
    assert vars(again) == {**vars(args), "nproc": None}


def test_command_constants_mirror_the_library():
    assert train_vae.DEFAULT_TIMEOUT_S == DEFAULT_TIMEOUT_S
