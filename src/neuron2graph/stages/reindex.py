"""Rebuild the run's SQLite index from its files: the index is a derived view.

Stages write files only (record: RUN/record/*.safetensors; build: RUN/graphs/L/L_N.json; eval:
RUN/eval/neurons/L_N.json; decode: RUN/decode/layer_LLL.safetensors; explain and score:
RUN/explain/explanations/<explainer>/L_N.json, RUN/explain/scores/L_N.json). `reindex` is the one
writer that turns them into tables: delete RUN/index.sqlite, run `n2g reindex`, and every query
answers as before. Each table has one indexer here; a stage that adds a table adds its indexer to
`INDEXERS`. Nothing here imports torch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from neuron2graph.store import db as dbmod
from neuron2graph.store import layout
from neuron2graph.store.run import Run


def index_neurons(run: Run, conn: sqlite3.Connection) -> int:
    """`neurons`: per-unit statistics of every recorded layer (from the layer files)."""
    n = 0
    for layer in run.layers if layout.sample_file(run.path).is_file() else []:
        s = run.stats(layer)
        top_window = run._slice(layout.layer_file(run.path, layer), "top_window")
        n_examples = (np.asarray(top_window) >= 0).sum(1)
        rows = [(layer, i, float(s["max"][i]), float(s["min"][i]), float(s["mean"][i]),
                 float(s["density"][i]), float(s["firing_rate"][i]), int(n_examples[i]))
                for i in range(len(s["max"]))]
        dbmod.write_neurons(conn, layer, rows)
        n += len(rows)
    return n


def index_graphs(run: Run, conn: sqlite3.Connection) -> int:
    """`graphs`: one row per graph file."""
    from neuron2graph.n2g.graph_io import index_graphs as rebuild

    return rebuild(run.path, conn)


def index_eval(run: Run, conn: sqlite3.Connection) -> int:
    """`eval`: headline numbers of every evaluated unit (from RUN/eval/neurons/*.json)."""
    from neuron2graph.evaluate.storage import rebuild_table

    return rebuild_table(run.path, conn)


def index_decode(run: Run, conn: sqlite3.Connection) -> int:
    """`decode`: decoded tokens with their pieces (from RUN/decode/layer_*.safetensors)."""
    from neuron2graph.decode.table import rebuild_table

    return rebuild_table(run, conn)


def index_explanations(run: Run, conn: sqlite3.Connection) -> int:
    """`explanations` + FTS5: every explanation file under RUN/explain (n2g explain)."""
    from neuron2graph.explain.storage import reindex as rebuild

    return rebuild(run.path, conn)


def index_explanation_scores(run: Run, conn: sqlite3.Connection) -> int:
    """`explanation_scores`: headline metrics of every scored unit (RUN/explain/scores)."""
    from neuron2graph.explain.storage import reindex_scores

    return reindex_scores(run.path, conn)


def index_search(run: Run, conn: sqlite3.Connection) -> int:
    """`graph_tokens`, `graph_stats`: the search index over the graph files."""
    from neuron2graph.search import index_run, n_indexed

    index_run(run, conn=conn, force=True, progress=False)
    return n_indexed(conn)


INDEXERS: dict[str, Callable[[Run, sqlite3.Connection], int]] = {
    "neurons": index_neurons,
    "graphs": index_graphs,
    "eval": index_eval,
    "decode": index_decode,
    "explanations": index_explanations,
    "explanation_scores": index_explanation_scores,
    "search": index_search,
}
"""Table (group) -> the function that derives it from the run's files, in dependency order."""


def reindex(run_dir: str | Path, only: list[str] | None = None) -> dict[str, Any]:
    """Rebuild the derived tables (`only` some of them); returns rows per table."""
    run = Run.open(run_dir)
    counts: dict[str, Any] = {}
    conn = run.db()
    try:
        from neuron2graph.search import connect

        conn = connect(conn)
        for name, fn in INDEXERS.items():
            if only is None or name in only:
                counts[name] = fn(run, conn)
    finally:
        conn.close()
    return counts


__all__ = ["INDEXERS", "reindex"]
