"""``probgen train-gan`` with tiny settings: outputs, resume, errors, defaults."""

from __future__ import annotations

import csv
import json
import math

import pytest

from probgen.cli import build_parser, main
from probgen.gan.train import TrainConfig

TINY = ["--steps", "4", "--batch-size", "8", "--hidden", "8", "--latent-dim", "2",
        "--eval-samples", "60", "--no-progress"]  # fmt: skip


def _rows(out):
    with (out / "history.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_ring_run_writes_every_output_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train-gan", *TINY, "--out", str(out)]) == 0
    for name in ("checkpoint.pt", "history.csv", "history.json", "metrics.json",
                 "samples.png", "value.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    rows = _rows(out)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(float(r["value"]) <= 0 for r in rows)
    assert json.loads((out / "history.json").read_text())[0]["step"] == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_modes"] == 8 and 0 <= metrics["mode_coverage"] <= 8
    assert 0 <= metrics["high_quality"] <= 1 and metrics["jsd_se"] > 0
    assert metrics["config"]["loss"] == "non-saturating"
    assert metrics["jsd_lower_bound"] == pytest.approx((metrics["value_last"] + math.log(4)) / 2)
    printed = capsys.readouterr().out
    assert "mode coverage" in printed and "JSD" in printed

    args = ["train-gan", *TINY, "--out", str(out), "--resume", "--no-plots"]
    args[args.index("--steps") + 1] = "6"
    assert main(args) == 0
    assert [int(r["step"]) for r in _rows(out)] == [1, 2, 3, 4, 5, 6]


def test_mixture1d_minimax(tmp_path):
    out = tmp_path / "m"
    assert main(["train-gan", *TINY, "--data", "mixture1d", "--loss", "minimax",
                 "--out", str(out)]) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_modes"] == 3 and metrics["loss"] == "minimax"
    assert (out / "samples.png").exists()


def test_resume_mismatch_is_a_clear_error(tmp_path, capsys):
    out = str(tmp_path)
    assert main(["train-gan", *TINY, "--no-plots", "--out", out]) == 0
    assert main(["train-gan", *TINY, "--no-plots", "--out", out, "--resume", "--lr", "0.5"]) == 2
    assert "lr=0.001" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train-gan", "--loss", "wasserstein"])


def test_defaults_match_train_config():
    args = build_parser().parse_args(["train-gan"])
    defaults = TrainConfig()
    for name in ("data", "loss", "steps", "batch_size", "lr", "seed", "latent_dim", "hidden",
                 "label_smoothing", "d_steps", "checkpoint_every"):  # fmt: skip
        assert getattr(args, name) == getattr(defaults, name), name


def test_zero_steps_reports_no_value_instead_of_nan(tmp_path, capsys):
    out = tmp_path / "run"
    args = [*TINY, "--out", str(out)]
    args[args.index("--steps") + 1] = "0"
    assert main(["train-gan", *args]) == 0
    assert (out / "value.png").stat().st_size > 0
    # Strict JSON: no NaN anywhere; the V-based entries are null.
    metrics = json.loads((out / "metrics.json").read_text(), parse_constant=pytest.fail)
    assert metrics["value_last"] is None and metrics["jsd_lower_bound"] is None
    assert "nan" not in capsys.readouterr().out
