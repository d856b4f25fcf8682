"""Example and synthetic search indexes: hand-built graphs for tests and docs, and bulk rows.

`example_graphs` are five small graphs with known overlaps. `fill_synthetic` writes index rows
directly (no graph files) for the scale test and the benchmark. Its token frequencies follow a
Zipf law over a 50,000-piece vocabulary, as real token frequencies do: a few pieces appear in a
large share of the graphs, most are rare. That is the hard case for an inverted index, so the
timings measured on it are not flattering.
"""

from __future__ import annotations

import sqlite3

import numpy as np

from neuron2graph.n2g.graph import NeuronGraph, fold_token
from neuron2graph.search.index import ACTIVATING, IMPORTANT, connect, ensure_schema, index_graph

VOCAB = 50_000


def token(rank: int) -> str:
    """The synthetic piece of a vocabulary rank (leading space, like most real pieces)."""
    return f" w{rank}"


def fill_synthetic(
    conn: sqlite3.Connection,
    n_graphs: int,
    *,
    seed: int = 0,
    n_layers: int = 30,
    zipf: float = 1.2,
) -> dict[tuple[int, int], dict[tuple[str, str], float]]:
    """Write `n_graphs` synthetic graphs' index rows; return them as ``{(L, N): {(role, tok): w}}``.

    Each graph has 1-4 activating tokens (weight 0.5-1.0) and 0-12 important context tokens
    (weight 0.75-1.0), drawn from the Zipf law; `n_components` is 1-4.
    """
    ensure_schema(conn)
    rng = np.random.default_rng(seed)
    per_layer = -(-n_graphs // n_layers)
    n_act = rng.integers(1, 5, n_graphs)
    n_imp = rng.integers(0, 13, n_graphs)
    draws = (rng.zipf(zipf, int(n_act.sum() + n_imp.sum())) - 1) % VOCAB
    weights = rng.random(draws.size)
    comps = rng.integers(1, 5, n_graphs)
    graphs: dict[tuple[int, int], dict[tuple[str, str], float]] = {}
    tok_rows: list[tuple[int, int, str, str, str, float]] = []
    stat_rows: list[tuple[object, ...]] = []
    k = 0
    for g in range(n_graphs):
        nid = (g // per_layer, g % per_layer)
        vec: dict[tuple[str, str], float] = {}
        for role, count, lo in ((ACTIVATING, n_act[g], 0.5), (IMPORTANT, n_imp[g], 0.75)):
            for _ in range(count):
                key = (role, token(int(draws[k])))
                vec[key] = max(vec.get(key, 0.0), round(lo + (1 - lo) * float(weights[k]), 4))
                k += 1
        graphs[nid] = vec
        tok_rows += [(*nid, r, t, fold_token(t), w) for (r, t), w in vec.items()]
        acts = [w for (r, _), w in vec.items() if r == ACTIVATING]
        imps = [w for (r, _), w in vec.items() if r == IMPORTANT]
        stat_rows.append(
            (*nid, len(acts), len(imps), int(comps[g]), len(vec), sum(acts), sum(imps),
             max(acts), "[]", None, None)
        )  # fmt: skip
    with conn:
        conn.executemany("INSERT INTO graph_tokens VALUES (?, ?, ?, ?, ?, ?)", tok_rows)
        conn.executemany(
            "INSERT INTO graph_stats VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", stat_rows
        )
    conn.execute("ANALYZE")
    return graphs


def example_graphs() -> list[NeuronGraph]:
    """Five hand-built graphs with known overlaps (the tests and docs/search.md use them).

    - 0:1 fires on " except" (1.0) after " all" (0.9)
    - 0:2 fires on " except" (0.6) after " all" two tokens back (0.8), and on " but" (0.7)
      after " nothing" (0.8): two behaviours
    - 1:3 fires on " all" (0.9) after " except" (0.95): 0:1's tokens in swapped roles
    - 1:4 fires on "Except" (0.8), no context
    - 2:5 is a superset of 0:1: " except" (1.0) and " unless" (0.9) after " all" (0.9) and
      " for" (0.8)
    """
    g1 = NeuronGraph("0:1")
    g1.add_path(" except", 1.0, [(" all", 0.9)])
    g2 = NeuronGraph("0:2")
    g2.add_path(" except", 0.6, [None, (" all", 0.8)])
    g2.add_path(" but", 0.7, [(" nothing", 0.8)])
    g3 = NeuronGraph("1:3")
    g3.add_path(" all", 0.9, [(" except", 0.95)])
    g4 = NeuronGraph("1:4")
    g4.add_path("Except", 0.8, [])
    g5 = NeuronGraph("2:5")
    g5.add_path(" except", 1.0, [(" all", 0.9)])
    g5.add_path(" unless", 0.9, [(" for", 0.8)])
    return [g1, g2, g3, g4, g5]


def example_index() -> sqlite3.Connection:
    """An in-memory index of `example_graphs`."""
    conn = connect(sqlite3.connect(":memory:"))
    for g in example_graphs():
        index_graph(conn, g)
    return conn


__all__ = ["VOCAB", "example_graphs", "example_index", "fill_synthetic", "token"]
