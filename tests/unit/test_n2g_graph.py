"""Trie matching: wildcards, backtracking, longest match, ties, greedy mode, persistence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from neuron2graph.errors import N2GError
from neuron2graph.n2g.graph import NeuronGraph


def _graph() -> NeuronGraph:
    g = NeuronGraph("0:1")
    g.add_path("B", 0.9, [None, ("A", 1.0)])  # A ? B
    g.add_path("B", 0.7, [("x", 0.8), ("y", 0.9)])  # y x B
    return g


def test_backtracking_finds_what_greedy_misses() -> None:
    g = _graph()
    tokens = ["A", "x", "B"]
    assert g.predict(tokens) == [0.0, 0.0, 0.9]
    m = g.explain(tokens)[2]
    assert m is not None and m.path == ((2, "B"), (1, None), (0, "A"))
    # greedy takes the exact child `x`, then finds no `A` below it and stops with nothing
    assert g.predict(tokens, search="greedy") == [0.0, 0.0, 0.0]
    assert g.predict(["y", "x", "B"], search="greedy")[2] == pytest.approx(0.7)


def test_longest_match_wins_over_shorter() -> None:
    g = NeuronGraph("0:1")
    g.add_path("B", 0.3, [])
    g.add_path("B", 0.9, [("A", 1.0)])
    assert g.predict(["A", "B"]) == [0.0, 0.9]
    assert g.predict(["z", "B"]) == [0.0, 0.3]
    assert g.predict(["B"]) == [0.3]  # text start: the path cannot go further left


def test_ties_go_to_higher_activation() -> None:
    g = NeuronGraph("0:1")
    g.add_path("B", 0.6, [None, ("A", 1.0)])
    g.add_path("B", 0.8, [("x", 1.0), ("A", 1.0)])
    assert g.predict(["A", "x", "B"])[2] == pytest.approx(0.8)
    assert g.predict(["A", "q", "B"])[2] == pytest.approx(0.6)


def test_trailing_wildcards_are_dropped_and_no_match_is_none() -> None:
    g = NeuronGraph("0:1")
    g.add_path("B", 0.5, [None, None])
    assert g.n_nodes() == 1
    assert g.explain(["q"]) == [None]


def test_termination_activation_is_mean_of_examples() -> None:
    g = NeuronGraph("0:1")
    g.add_path("B", 0.6, [], example=0)
    g.add_path("B", 1.0, [], example=1)
    assert g.predict(["B"])[0] == pytest.approx(0.8)
    assert g.root.children["B"].examples == [0, 1]


def test_exact_tokens_unless_fold() -> None:
    g = NeuronGraph("0:1")
    g.add_path(" The", 1.0, [])
    assert g.predict(["the", " The"]) == [0.0, 1.0]
    f = NeuronGraph("0:1", fold=True)
    f.add_path(" The", 1.0, [])
    assert f.predict(["the", " The"]) == [1.0, 1.0]


def test_round_trip_and_schema_errors(tmp_path: Path) -> None:
    g = _graph()
    g.save(tmp_path / "g.json")
    back = NeuronGraph.load(tmp_path / "g.json")
    assert back.to_json() == g.to_json()
    assert back.predict(["A", "x", "B"]) == g.predict(["A", "x", "B"])
    data = json.loads((tmp_path / "g.json").read_text())
    data["version"] = 99
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(N2GError, match="schema version 99"):
        NeuronGraph.load(tmp_path / "bad.json")
    (tmp_path / "junk.json").write_text("{")
    with pytest.raises(N2GError, match="not valid JSON"):
        NeuronGraph.load(tmp_path / "junk.json")
    with pytest.raises(N2GError, match="no graph file"):
        NeuronGraph.load(tmp_path / "missing.json")
    with pytest.raises(N2GError, match="unknown search"):
        g.predict(["B"], search="bogus")  # type: ignore[arg-type]


def test_load_and_predict_without_torch(tmp_path: Path) -> None:
    _graph().save(tmp_path / "g.json")
    code = (
        "import sys\nfrom neuron2graph.n2g import NeuronGraph\n"
        f"g = NeuronGraph.load({str(tmp_path / 'g.json')!r})\n"
        "print(g.predict(['A', 'x', 'B'])[2], 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0.9", "False"]
