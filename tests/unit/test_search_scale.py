"""Scale check: 50,000 synthetic graphs written as index rows (Zipf token law, fixed seed).

Asserts correctness against brute force computed from the same data; the timings live in
benchmarks/search.py, not here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from neuron2graph.n2g.graph import NeuronGraph
from neuron2graph.search import (
    connect,
    index_graph,
    neurons_by_components,
    search_neurons,
    similar_neurons,
    similar_pairs,
)
from neuron2graph.search.synthetic import fill_synthetic, token

N = 50_000
Vecs = dict[tuple[int, int], dict[tuple[str, str], float]]


@pytest.fixture(scope="module")
def big() -> Iterator[tuple[sqlite3.Connection, Vecs]]:
    conn = connect(sqlite3.connect(":memory:"))
    vecs = fill_synthetic(conn, N, seed=7)
    # two planted near-twins with tokens no synthetic graph has
    for nid, extra in (("40:1", 0.9), ("40:2", 0.85)):
        g = NeuronGraph(nid)
        g.add_path(" planted", 1.0, [(" zz_ctx", 0.9)])
        g.add_path(" planted2", extra, [(" zz_ctx", 0.8)])
        index_graph(conn, g)
    yield conn, vecs
    conn.close()


def _brute_scores(vecs: Vecs, terms: list[tuple[str, str]]) -> dict[str, float]:
    out = {}
    for (layer, neuron), v in vecs.items():
        total = 0.0
        for role, tok in terms:
            roles = ("activating", "important") if role == "any" else (role,)
            w = [v[(r, tok)] for r in roles if (r, tok) in v]
            if not w:
                break
            total += max(w)
        else:
            out[f"{layer}:{neuron}"] = total
    return out


QUERIES = [
    [("activating", token(0))],
    [("important", token(1))],
    [("any", token(2)), ("activating", token(0))],
    [("activating", token(3)), ("important", token(0)), ("important", token(5))],
    [("any", token(900))],
]


@pytest.mark.parametrize("terms", QUERIES)
def test_search_matches_brute_force(
    big: tuple[sqlite3.Connection, Vecs], terms: list[tuple[str, str]]
) -> None:
    conn, vecs = big
    kw: dict[str, list[str]] = {"activating": [], "important": [], "any": []}
    for role, tok in terms:
        kw[role].append(tok)
    res = search_neurons(conn, kw["activating"], kw["important"], kw["any"], limit=20)
    want = _brute_scores(vecs, terms)
    assert res, "every benchmark query has hits"
    assert len(res) == min(20, len(want))
    for r in res:  # every hit holds every term, with the score brute force gives it
        assert r["score"] == pytest.approx(want[r["id"]], abs=1e-6)
    best = sorted(want.values(), reverse=True)[: len(res)]
    assert [r["score"] for r in res] == pytest.approx(best, abs=1e-6)


def test_planted_neurons_are_found(big: tuple[sqlite3.Connection, Vecs]) -> None:
    conn, _ = big
    res = search_neurons(conn, activating=[" planted"], important=[" zz_ctx"])
    # equal scores (1.0 + 0.9); 40:2 has less other weight, so it is more specific
    assert [r["id"] for r in res] == ["40:2", "40:1"]
    assert res[0]["score"] == res[1]["score"] == pytest.approx(1.9)
    sim = similar_neurons(conn, "40:1", 3)
    assert sim[0]["id"] == "40:2" and sim[0]["relation"] == "equal"
    # |40:1| = 1.0 + .9 + .5*.9 = 2.35, |40:2| = 1.0 + .85 + .5*.9 = 2.30 = sum min
    assert sim[0]["similarity"] == pytest.approx(2.30 / 2.35, abs=1e-6)


def test_similar_pairs_at_scale(big: tuple[sqlite3.Connection, Vecs]) -> None:
    conn, vecs = big
    pairs = similar_pairs(conn, 0.9)
    ids = {(p["a"], p["b"]) for p in pairs}
    assert ("40:1", "40:2") in ids
    rw = {"activating": 1.0, "important": 0.5}
    for p in pairs[::50]:  # spot-check the reported value against brute force
        a, b = (tuple(map(int, p[k].split(":"))) for k in ("a", "b"))
        if a not in vecs or b not in vecs:
            continue
        va = {d: w * rw[d[0]] for d, w in vecs[a].items()}  # type: ignore[index]
        vb = {d: w * rw[d[0]] for d, w in vecs[b].items()}  # type: ignore[index]
        smin = sum(min(va[d], vb[d]) for d in va.keys() & vb.keys())
        sim = smin / (sum(va.values()) + sum(vb.values()) - smin)
        assert sim >= 0.9 and p["similarity"] == pytest.approx(sim, abs=1e-6)


def test_components_stat_is_sortable(big: tuple[sqlite3.Connection, Vecs]) -> None:
    conn, _ = big
    (want,) = conn.execute("SELECT COUNT(*) FROM graph_stats WHERE n_components >= 4").fetchone()
    res = neurons_by_components(conn, 4, limit=N)
    assert len(res) == want > 0
    assert all(r["n_components"] >= 4 for r in res)
