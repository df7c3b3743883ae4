"""The command line: help stays light, the tour runs."""

import math
import subprocess
import sys

from probgen.cli import main

HEAVY = ("pyro", "scipy", "matplotlib", "sklearn", "hypothesis")


def test_help_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from probgen.cli import build_parser\n"
        "build_parser().format_help()\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_help_lists_every_command(capsys):
    try:
        main(["--help"])
    except SystemExit as exit:
        assert exit.code == 0
    assert "tour" in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage: probgen" in capsys.readouterr().out


def test_tour_shows_methods(capsys):
    assert main(["tour", "--samples", "200"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "‖" in line]
    methods = ["analytic" if " [analytic] " in row else "mc" for row in rows]
    assert methods == ["analytic"] * 5 + ["mc"]  # only the mixture has no closed form
    for row in rows:
        probgen_value = float(
            row.split(f" [{'analytic' if 'analytic' in row else 'mc'}] ")[0].split()[-1]
        )
        assert math.isfinite(probgen_value) and probgen_value >= 0, row


def test_tour_refuses_fewer_than_two_samples(capsys):
    for bad in ("1", "0", "many"):
        try:
            main(["tour", "--samples", bad])
        except SystemExit as exit:
            assert exit.code == 2
        else:
            raise AssertionError(f"--samples {bad} was accepted")
        assert f"--samples: must be an integer ≥ 2, got '{bad}'" in capsys.readouterr().err
