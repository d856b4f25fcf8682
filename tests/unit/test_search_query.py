"""Search over hand-built graphs: hits, ranking, AND semantics, --any, folding, components."""

from __future__ import annotations

import pytest

from neuron2graph.errors import N2GError
from neuron2graph.n2g.graph import NeuronGraph
from neuron2graph.search import index_graph, neurons_by_components, remove_graph, search_neurons
from neuron2graph.search.synthetic import example_graphs as graphs
from neuron2graph.search.synthetic import example_index as indexed


def ids(results: list[dict]) -> list[str]:
    return [r["id"] for r in results]


def test_activating_exact_ranked_by_weight_then_specificity() -> None:
    res = search_neurons(indexed(), activating=[" except"])
    # 0:1 and 2:5 both fire at 1.0; 0:1 is about nothing else, so it is more specific.
    assert ids(res) == ["0:1", "2:5", "0:2"]
    assert [r["score"] for r in res] == [1.0, 1.0, 0.6]
    assert res[0]["specificity"] == pytest.approx(1.0 / 1.9, abs=1e-6)
    assert res[0]["matched"] == [
        {"clause": "activating", "role": "activating", "token": " except", "weight": 1.0}
    ]


def test_exact_piece_needs_the_leading_space() -> None:
    conn = indexed()
    assert search_neurons(conn, activating=["except"]) == []
    assert ids(search_neurons(conn, activating=["Except"])) == ["1:4"]


def test_fold_matches_case_and_space_insensitively() -> None:
    res = search_neurons(indexed(), activating=["EXCEPT "], fold=True)
    assert ids(res) == ["0:1", "2:5", "1:4", "0:2"]
    assert res[2]["matched"][0]["token"] == "Except"


def test_clauses_combine_with_and() -> None:
    conn = indexed()
    res = search_neurons(conn, activating=[" except"], important=[" all"])
    assert ids(res) == ["0:1", "2:5", "0:2"]
    assert res[2]["score"] == pytest.approx(0.6 + 0.8)
    # a second activating token narrows to the graph holding both
    assert ids(search_neurons(conn, activating=[" except", " unless"])) == ["2:5"]
    assert search_neurons(conn, activating=[" except", " but", " unless"]) == []
    # role matters: " except" is only context in 1:3
    assert "1:3" not in ids(search_neurons(conn, activating=[" except"]))
    assert ids(search_neurons(conn, important=[" except"])) == ["1:3"]


def test_any_matches_either_role() -> None:
    conn = indexed()
    res = search_neurons(conn, any=[" except"])
    assert ids(res) == ["0:1", "2:5", "1:3", "0:2"]
    assert res[2]["matched"][0]["role"] == "important"
    assert res[2]["score"] == pytest.approx(0.95)
    res = search_neurons(conn, any=[" all"], activating=[" unless"])
    assert ids(res) == ["2:5"]
    assert {m["clause"] for m in res[0]["matched"]} == {"any", "activating"}


def test_limit_min_components_and_errors() -> None:
    conn = indexed()
    assert len(search_neurons(conn, any=[" except"], limit=2)) == 2
    assert ids(search_neurons(conn, activating=[" except"], min_components=2)) == ["2:5", "0:2"]
    with pytest.raises(N2GError, match="no search clause"):
        search_neurons(conn)


def test_reindex_replaces_and_remove_drops() -> None:
    conn = indexed()
    g = NeuronGraph("0:1")
    g.add_path(" because", 0.9, [])
    index_graph(conn, g)
    assert "0:1" not in ids(search_neurons(conn, activating=[" except"]))
    assert ids(search_neurons(conn, activating=[" because"])) == ["0:1"]
    remove_graph(conn, "0:1")
    assert search_neurons(conn, activating=[" because"]) == []


def test_neurons_by_components_sorted() -> None:
    res = neurons_by_components(indexed(), 2)
    assert ids(res) == ["2:5", "0:2"]  # both 2 behaviours; 2:5 fires stronger
    assert res[1]["behaviours"] == [[" but"], [" except"]]
    assert len(neurons_by_components(indexed(), 1)) == len(graphs())
