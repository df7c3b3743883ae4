"""``probgen train-vae`` end to end with tiny settings: outputs exist and hold finite numbers."""

from __future__ import annotations

import csv
import json
import math

import pytest

from probgen.cli import main
from probgen.commands import train_vae
from probgen.vae.train import TrainConfig

TINY = ["--epochs", "1", "--latent-dim", "2", "--hidden", "16", "--batch-size", "500"]
TINY += ["--iwae-samples", "3", "--no-progress"]


def test_train_vae_writes_finite_outputs(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train-vae", *TINY, "--out", str(out)]) == 0
    assert "test ELBO" in capsys.readouterr().out
    names = {p.name for p in out.iterdir()}
    expected = {"metrics.csv", "metrics.json", "checkpoint.pt", "report.md"}
    expected |= {"loss_curves.png", "reconstructions.png", "samples.png", "latent.png"}
    assert expected <= names
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    assert all(math.isfinite(float(v)) for v in rows[0].values())  # IWAE filled in too
    payload = json.loads((out / "metrics.json").read_text())
    assert payload["config"]["latent_dim"] == 2
    final = payload["final"]
    assert all(math.isfinite(final[k]) for k in ("test_elbo", "test_recon", "test_kl"))
    assert final["test_iwae"] >= final["test_elbo"] - 5.0  # same order: both are nats/image
    report = (out / "report.md").read_text()
    assert f"{final['test_elbo']:.3f}" in report and f"{final['test_iwae']:.3f}" in report
    for png in expected - {"metrics.csv", "metrics.json", "checkpoint.pt", "report.md"}:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_cli_continues_and_refuses_changes(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train-vae", *TINY, "--no-plots", "--out", out]) == 0
    args = ["train-vae", *TINY, "--no-plots", "--out", out, "--resume"]
    assert main([*args[:2], "2", *args[3:]]) == 0
    payload = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [row["epoch"] for row in payload["epochs"]] == [1, 2]
    capsys.readouterr()
    assert main([*args, "--lr", "0.5"]) == 1
    assert "lr=0.5 (checkpoint: 0.001)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--likelihood", "poisson"], "valid names: ['bernoulli', 'binomial'"),
        (["--elbo", "graph"], "valid names: ['meanfield', 'trace']"),
        (["--likelihood", "bernoulli", "--pixels", "counts"], "outside the support"),
        (["--resume"], "no checkpoint to resume from"),
    ],
)
def test_bad_input_is_reported(tmp_path, capsys, option, message):
    out = tmp_path / "run"
    assert main(["train-vae", *TINY, "--out", str(out), *option]) == 1
    assert message in capsys.readouterr().err
    assert not (out / "checkpoint.pt").exists()


def test_command_defaults_are_the_config_defaults():
    config = TrainConfig()
    assert {k: getattr(config, k) for k in train_vae._DEFAULTS} == train_vae._DEFAULTS


@pytest.mark.parametrize("likelihood", ["bernoulli", "categorical", "continuous_bernoulli"])
def test_other_likelihoods_train_on_their_encoding(tmp_path, likelihood):
    out = tmp_path / likelihood
    assert main(["train-vae", *TINY, "--likelihood", likelihood, "--out", str(out)]) == 0
    payload = json.loads((out / "metrics.json").read_text())
    assert all(math.isfinite(v) for v in payload["final"].values())
    assert (out / "reconstructions.png").is_file() and (out / "samples.png").is_file()
