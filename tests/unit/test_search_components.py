"""Behaviour counts on the condensed layered view: graphs with 1, 2 and 3 behaviours."""

from __future__ import annotations

from neuron2graph.n2g.graph import NeuronGraph
from neuron2graph.search import behaviours, condensed_components, n_components
from neuron2graph.search.synthetic import example_index


def test_one_behaviour_when_activating_tokens_share_a_context_node() -> None:
    g = NeuronGraph("0:0")
    g.add_path(" except", 1.0, [(" all", 0.9)])
    g.add_path(" but", 0.8, [(" all", 0.8)])  # same (depth 2, " all") node: one behaviour
    g.add_path(" except", 0.9, [(" for", 0.8), None, (" not", 0.9)])
    comps = condensed_components(g)
    assert len(comps) == 1
    assert comps[0] == {(1, " except"), (1, " but"), (2, " all"), (2, " for"), (4, " not")}
    assert behaviours(g) == [[" but", " except"]]


def test_two_behaviours_and_depth_matters() -> None:
    g = NeuronGraph("0:0")
    g.add_path(" except", 1.0, [(" all", 0.9)])
    g.add_path(" but", 0.8, [None, (" all", 0.8)])  # " all" at depth 3, not 2: not shared
    assert n_components(g) == 2
    assert behaviours(g) == [[" except"], [" but"]]  # strongest behaviour first


def test_three_behaviours_including_a_bare_activating_token() -> None:
    g = NeuronGraph("0:0")
    g.add_path(" except", 1.0, [(" all", 0.9)])
    g.add_path(" unless", 0.7, [(" for", 0.9)])
    g.add_path(" def", 0.9, [])
    g.add_path(" class", 0.6, [None, None, (" for", 0.8)])  # (4, " for") != (2, " for")
    assert n_components(g) == 4
    g.add_path(" class", 0.6, [(" for", 0.8)])  # now linked to " unless" through (2, " for")
    assert n_components(g) == 3
    assert sorted(map(sorted, behaviours(g))) == [[" class", " unless"], [" def"], [" except"]]


def test_wildcards_are_dropped_but_keep_depth_and_empty_graph() -> None:
    g = NeuronGraph("0:0")
    g.add_path(" x", 1.0, [None, None, (" y", 0.8)])
    assert condensed_components(g) == [{(1, " x"), (4, " y")}]
    assert n_components(NeuronGraph("0:1")) == 0


def test_folded_graph_merges_by_key() -> None:
    g = NeuronGraph("0:0", fold=True)
    g.add_path("Except", 1.0, [(" The", 0.9)])
    g.add_path(" but", 1.0, [("the", 0.9)])
    assert n_components(g) == 1


def test_index_stores_the_count() -> None:
    conn = example_index()
    rows = dict(conn.execute("SELECT layer || ':' || neuron, n_components FROM graph_stats"))
    assert rows == {"0:1": 1, "0:2": 2, "1:3": 1, "1:4": 1, "2:5": 2}
