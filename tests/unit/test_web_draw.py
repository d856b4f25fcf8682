"""The condensed drawing: merging by (depth, token), wildcard bridging, components, formats."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from neuron2graph.n2g.graph import NeuronGraph
from neuron2graph.web.draw import condense, display_token, render
from system_tools import require_tool


def graph() -> NeuronGraph:
    g = NeuronGraph("1:2")
    g.add_path(" except", 1.0, [(" all", 0.9)], example=0)
    g.add_path(" except", 0.8, [(" all", 0.9), None, (" for", 0.8)], example=1)
    g.add_path(" except", 0.7, [None, (" the", 0.8)], example=2)
    g.add_path("\n", 0.6, [("def", 0.95)], example=3)
    return g


def test_condense_merges_bridges_and_splits_behaviours() -> None:
    cg = condense(graph())
    tokens = {(n.depth, n.token): n for n in cg.nodes.values()}
    assert set(tokens) == {(1, " except"), (2, " all"), (4, " for"), (3, " the"), (1, "\n"),
                           (2, "def")}
    assert tokens[(1, " except")].kind == "activating"
    assert tokens[(2, " all")].ends and tokens[(4, " for")].ends
    assert not tokens[(1, " except")].ends
    assert tokens[(2, " all")].examples == [0, 1]
    by_id = {n.id: n.token for n in cg.nodes.values()}
    spans = {(by_id[a], by_id[b]): s for (a, b), s in cg.edges.items()}
    assert spans == {(" all", " except"): 1, (" for", " all"): 2, (" the", " except"): 2,
                     ("def", "\n"): 1}
    assert len(cg.components()) == 2  # polysemantic: two disconnected subgraphs


def test_display_token() -> None:
    assert display_token(" except") == "␣except"
    assert display_token("\n") == "\\n"
    assert display_token(" ") == "␣"


def test_render_formats() -> None:
    require_tool("dot", "install Debian graphviz (make sysdeps)")
    g = graph()
    svg = render(g, "svg").decode()
    assert "<svg" in svg and 'id="n1_0"' in svg and "␣except" in svg
    assert render(g, "png").startswith(b"\x89PNG")
    dot = render(g, "dot").decode()
    assert "penwidth=3" in dot and "style=dashed" in dot


def test_missing_dot_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from neuron2graph.errors import N2GError

    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(N2GError, match="install Debian graphviz"):
        render(graph(), "svg")


def test_web_package_never_imports_torch() -> None:
    code = ("import sys\nimport neuron2graph.web.app, neuron2graph.web.static_site\n"
            "import neuron2graph.cli.web_cmd\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
