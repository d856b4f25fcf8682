"""Import-graph checks (docs/architecture.md, "Layering"), each in a fresh interpreter so that
what one test imported cannot hide what another imports."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import neuron2graph

SRC = Path(neuron2graph.__file__).parent
STAGE_PACKAGES = ("n2g", "evaluate", "decode", "record", "search", "explain", "web", "cli",
                  "stages", "models", "corpus")


def loaded_after(code: str) -> list[str]:
    """Module names loaded by a fresh interpreter after running `code`."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_store_imports_no_stage() -> None:
    """Statically (every import statement, lazy ones too) and at run time."""
    offenders = []
    for path in sorted((SRC / "store").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                parts = name.split(".")
                if parts[0] == "neuron2graph" and len(parts) > 1 and parts[1] in STAGE_PACKAGES:
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []
    mods = loaded_after("import neuron2graph.store, neuron2graph.store.run, "
                        "neuron2graph.store.layout, neuron2graph.store.db")
    assert [m for m in mods if m.split(".")[:2][-1] in STAGE_PACKAGES
            and m.startswith("neuron2graph.")] == []


def test_help_and_web_app_do_not_import_torch() -> None:
    help_mods = loaded_after(
        "from typer.testing import CliRunner\nfrom neuron2graph.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0, r.output")
    assert "torch" not in help_mods
    web_mods = loaded_after("import neuron2graph.web.app")
    assert "torch" not in web_mods and "transformers" not in web_mods


def test_stage_framework_and_graph_io_do_not_import_torch() -> None:
    mods = loaded_after("import neuron2graph.stages, neuron2graph.n2g.stage, "
                        "neuron2graph.n2g.graph_io, neuron2graph.stages.reindex")
    assert "torch" not in mods


def test_graph_schema_does_not_import_the_store() -> None:
    mods = loaded_after("import neuron2graph.n2g.graph")
    assert "neuron2graph.store" not in mods and "neuron2graph.store.run" not in mods


def test_no_library_package_imports_the_cli() -> None:
    """The CLI only parses and prints: stage logic lives in the library, which never reaches
    back into `neuron2graph.cli` (lazy imports included)."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if "cli" in path.relative_to(SRC).parts or path.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(SRC)}: {n}" for n in names
                          if n.startswith("neuron2graph.cli")]
    assert offenders == []
