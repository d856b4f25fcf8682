"""Similarity computed by hand, subset relations, and the prefix filter against brute force."""

from __future__ import annotations

import itertools
import sqlite3

import pytest

from neuron2graph.errors import N2GError
from neuron2graph.n2g.graph import NeuronGraph
from neuron2graph.search import connect, index_graph, similar_neurons, similar_pairs
from neuron2graph.search.synthetic import example_graphs, example_index, fill_synthetic

# With role weights activating 1.0 / important 0.5:
#   0:1 = {a except: 1.0, i all: 0.45}                                  |0:1| = 1.45
#   0:2 = {a except: 0.6, a but: 0.7, i all: 0.4, i nothing: 0.4}       |0:2| = 2.10
#   2:5 = {a except: 1.0, a unless: 0.9, i all: 0.45, i for: 0.4}       |2:5| = 2.75


def test_similar_neurons_by_hand() -> None:
    res = similar_neurons(example_index(), "0:1")
    assert [r["id"] for r in res] == ["2:5", "0:2"]
    sup, other = res
    assert sup["similarity"] == pytest.approx(1.45 / 2.75, abs=1e-6)
    assert sup["containment"] == pytest.approx(1.0)
    assert sup["containment_rev"] == pytest.approx(1.45 / 2.75, abs=1e-6)
    assert sup["relation"] == "subset"  # 0:1's tokens are all in 2:5
    assert sup["official"] == pytest.approx(0.5)
    # sum min = min(1, .6) + min(.45, .4) = 1.0; sum max = 1.45 + 2.1 - 1.0
    assert other["similarity"] == pytest.approx(1.0 / 2.55, abs=1e-6)
    assert other["containment"] == pytest.approx(1.0 / 1.45, abs=1e-6)
    assert other["relation"] == "subset"  # 0:1's two tokens are among 0:2's four
    assert other["official"] == pytest.approx(0.5)  # the official measure cannot tell them apart
    assert other["shared"] == [
        {"role": "activating", "token": " except"},
        {"role": "important", "token": " all"},
    ]


def test_roles_are_separate_dimensions() -> None:
    # 1:3 has 0:1's two tokens in swapped roles: |A∩B|/max = 1.0 for the official measure.
    assert similar_neurons(example_index(), "1:3") == []


def test_rank_by_containment_and_superset_relation() -> None:
    res = similar_neurons(example_index(), "2:5", by="containment")
    assert [r["id"] for r in res] == ["0:1", "0:2"]
    assert res[0]["relation"] == "superset"
    assert res[0]["containment"] == pytest.approx(1.45 / 2.75, abs=1e-6)
    assert res[1]["containment"] == pytest.approx(1.0 / 2.75, abs=1e-6)


def test_role_weights_change_the_value() -> None:
    res = similar_neurons(example_index(), "0:1", role_weights={"important": 1.0})
    assert res[0]["similarity"] == pytest.approx(1.9 / 3.6, abs=1e-6)


def test_unknown_neuron_is_one_line_error() -> None:
    with pytest.raises(N2GError, match="9:9 has no indexed graph"):
        similar_neurons(example_index(), "9:9")


def test_similar_pairs_by_hand_with_equal_copy() -> None:
    conn = example_index()
    copy = NeuronGraph("3:1")
    copy.add_path(" except", 1.0, [(" all", 0.9)])
    index_graph(conn, copy)
    pairs = similar_pairs(conn, 0.3)
    got = [(p["a"], p["b"], p["relation"]) for p in pairs]
    assert got == [
        ("0:1", "3:1", "equal"),
        ("0:1", "2:5", "subset"),
        ("2:5", "3:1", "superset"),
        ("0:1", "0:2", "subset"),
        ("0:2", "3:1", "superset"),
    ]
    assert pairs[0]["similarity"] == 1.0
    assert pairs[1]["similarity"] == pytest.approx(1.45 / 2.75, abs=1e-6)
    assert [p["a"] for p in similar_pairs(conn, 0.9)] == ["0:1"]
    with pytest.raises(N2GError, match="threshold"):
        similar_pairs(conn, 0.0)


def _brute(vecs: dict, threshold: float) -> set[tuple[str, str]]:
    rw = {"activating": 1.0, "important": 0.5}
    weighted = {k: {d: w * rw[d[0]] for d, w in v.items()} for k, v in vecs.items()}
    out = set()
    for (a, va), (b, vb) in itertools.combinations(sorted(weighted.items()), 2):
        smin = sum(min(va[d], vb[d]) for d in va.keys() & vb.keys())
        smax = sum(va.values()) + sum(vb.values()) - smin
        if smin / smax >= threshold:
            out.add(("{}:{}".format(*a), "{}:{}".format(*b)))
    return out


@pytest.mark.parametrize("threshold", [0.3, 0.6, 0.9])
def test_prefix_filter_finds_exactly_the_brute_force_pairs(threshold: float) -> None:
    conn = connect(sqlite3.connect(":memory:"))
    vecs = fill_synthetic(conn, 500, seed=3, zipf=1.6)
    want = _brute(vecs, threshold)
    got = {(p["a"], p["b"]) for p in similar_pairs(conn, threshold)}
    assert want  # the data has pairs above every threshold tested
    assert got == want


def test_example_graphs_round_trip_through_the_index() -> None:
    assert len(example_graphs()) == 5


def test_official_measure_merges_roles() -> None:
    conn = example_index()
    g = NeuronGraph("3:6")
    g.add_path(" except", 0.9, [(" but", 0.8)])  # " but" is activating in 0:2, context here
    index_graph(conn, g)
    res = {r["id"]: r for r in similar_neurons(conn, "3:6")}
    # official: tokens {except, but} vs 0:2's {except, but, all, nothing} -> 2 / 4
    assert res["0:2"]["official"] == pytest.approx(0.5)
    assert res["0:2"]["relation"] is None  # role-tagged: i " but" is not in 0:2
    # ours: sum min = min(.9, .6) = .6; |3:6| = .9 + .4, |0:2| = 2.1
    assert res["0:2"]["similarity"] == pytest.approx(0.6 / (1.3 + 2.1 - 0.6), abs=1e-6)
