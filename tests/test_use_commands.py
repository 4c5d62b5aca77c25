"""serve, info and plot as commands: registered, with an example in --help, and cheap to ask
for help (no torch, no web framework imported)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tfcli.cli import app

COMMANDS = ["serve", "info", "plot"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_an_example(command):
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.stdout and f"tfcli {command}" in result.stdout


def test_help_imports_neither_torch_nor_the_server():
    script = (
        "import sys\n"
        "import tfcli.cli\n"
        f"for command in {[[c, '--help'] for c in COMMANDS] + [['translate', '--help']]!r}:\n"
        "    try:\n"
        "        tfcli.cli.app(command, prog_name='tfcli')\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, e.code\n"
        "for name in ('torch', 'fastapi', 'uvicorn', 'plotext', 'matplotlib'):\n"
        "    assert name not in sys.modules, name\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "--show-attention" in proc.stdout and "--alignment" in proc.stdout
