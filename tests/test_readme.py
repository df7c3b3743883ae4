"""The README's two commands stay true: CI runs the test command, the main command parses."""

import re
import shlex
from pathlib import Path

from probgen.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def _block(name: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- {name} -->\n```\n(.*?)\n```\n<!-- /{name} -->", text, re.S)
    assert match, f"README has no {name} block"
    return match.group(1)


def test_ci_runs_the_readme_test_command():
    command = _block("test-command")
    assert "pytest" in command and "python3 -m venv .venv" in command
    assert "test-command" in (ROOT / ".ci" / "run").read_text()


def test_main_command_sets_up_and_runs_a_probgen_command():
    command = _block("main-command")
    assert command.startswith("python3 -m venv .venv")
    probgen_args = shlex.split(command.split(".venv/bin/probgen", 1)[1])
    args = build_parser().parse_args(probgen_args)
    assert args.command == "train-vae"


def test_python_examples_run():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 2
    namespaces = []
    for block in blocks:
        namespaces.append({})
        exec(compile(block, "README.md", "exec"), namespaces[-1])
    # The Gamma example of the README: ≥ 0 in float32 too.
    first = namespaces[0]
    assert float(first["probgen"].kl_divergence(first["p"], first["q"])) >= 0
