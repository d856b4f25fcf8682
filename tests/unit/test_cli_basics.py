"""The CLI's cross-cutting promises: fast help without torch, one-line errors, version."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from neuron2graph.cli import app
from neuron2graph.cli.app import wrap_errors
from neuron2graph.errors import N2GError


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from neuron2graph.cli import app\n"
        "from typer.testing import CliRunner\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"`n2g --help` imported {out.stdout.strip()}"


def test_every_command_has_help() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in app.registered_commands:
        name = cmd.name or cmd.callback.__name__.replace("_", "-")  # type: ignore[union-attr]
        sub = runner.invoke(app, [name, "--help"])
        assert sub.exit_code == 0, f"{name} --help failed: {sub.output}"


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("neuron2graph ")


def test_user_error_is_one_line_exit_2() -> None:
    import typer

    local = typer.Typer()

    @local.command()
    @wrap_errors
    def boom(name: str = "x") -> None:
        raise N2GError(f"bad input {name}:   do   X")

    result = CliRunner().invoke(local, ["--name", "y"])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert lines == ["error: bad input y: do X"]
