"""``probgen check-kl`` smoke tests: a passing pair, a failing pair, JSON output."""

from __future__ import annotations

import json

from probgen.cli import main


def test_check_kl_passes_on_poisson_and_writes_json(tmp_path, capsys):
    out = tmp_path / "audit.json"
    rc = main(["check-kl", "--pair", "Poisson ‖ Poisson", "--json", str(out)])
    assert rc == 0, capsys.readouterr().out
    printed = capsys.readouterr().out
    assert "| Poisson ‖ Poisson |" in printed and "exact sum" in printed
    data = json.loads(out.read_text(encoding="utf-8"))
    assert {row["dtype"] for row in data["rows"]} == {"float32", "float64"}
    assert all(row["status"] == "pass" for row in data["rows"])


def test_check_kl_exits_non_zero_on_torch_gumbel_in_float32(capsys):
    # torch's KL(Gumbel ‖ Gumbel) loses all digits (goes negative) for near-equal Gumbels with
    # a small scale in float32.
    rc = main(["check-kl", "--torch", "--dtype", "float32", "--pair", "Gumbel ‖ Gumbel"])
    printed = capsys.readouterr().out
    assert rc == 1
    assert "FAIL" in printed


def test_check_kl_with_no_matching_pair_is_an_error(capsys):
    assert main(["check-kl", "--pair", "NoSuchDistribution"]) == 2


def test_json_into_a_missing_directory_fails_before_the_audit(tmp_path, capsys):
    out = tmp_path / "missing" / "audit.json"
    assert main(["check-kl", "--pair", "Poisson ‖ Poisson", "--json", str(out)]) == 2
    captured = capsys.readouterr()
    assert "no such directory" in captured.err and "--json" in captured.err
    assert "| Poisson ‖ Poisson |" not in captured.out  # refused before auditing
