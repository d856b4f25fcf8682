"""A run's graph files and the `graphs` table derived from them (no torch).

The build stage writes one file per unit (`store.layout.graph_file`, atomic); the `graphs` rows of
RUN/index.sqlite are derived from those files by the driver at the end of a build, or by
`n2g reindex` at any time. This lives in the n2g package, not the store, because reading a graph
needs the graph's schema: the store knows paths, never graph internals.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from neuron2graph.ids import NeuronId
from neuron2graph.n2g.graph import NeuronGraph
from neuron2graph.store import layout

GRAPH_COLUMNS = "layer, neuron, path, n_nodes, n_activating, built_at"


def load_graph(run_dir: Path, nid: NeuronId) -> NeuronGraph | None:
    """The unit's saved graph, or None when it has not been built."""
    path = layout.graph_file(run_dir, nid)
    if not path.is_file():
        return None
    return NeuronGraph.load(path)


def save_graph(run_dir: Path, graph: NeuronGraph) -> Path:
    """Write the graph atomically to its file (the index is derived later, by the driver)."""
    path = layout.graph_file(run_dir, NeuronId.parse(graph.neuron))
    graph.save(path)
    return path


def graph_row(run_dir: Path, nid: NeuronId) -> tuple[object, ...] | None:
    """The `graphs` row of one unit, read from its file (None: no graph)."""
    path = layout.graph_file(run_dir, nid)
    graph = load_graph(run_dir, nid)
    if graph is None:
        return None
    built = datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")
    return (nid.layer, nid.neuron, str(path.relative_to(run_dir)), graph.n_nodes(),
            graph.n_activating(), built)


def graph_files(run_dir: Path) -> list[NeuronId]:
    """Every unit with a graph file under RUN/graphs (sorted)."""
    out = []
    for path in layout.graphs_dir(run_dir).glob("*/*.json"):
        layer, _, neuron = path.stem.partition("_")
        if layer.isdigit() and neuron.isdigit() and path.parent.name == layer:
            out.append(NeuronId(int(layer), int(neuron)))
    return sorted(out)


def index_graphs(run_dir: Path, conn: sqlite3.Connection,
                 nids: Iterable[NeuronId] | None = None) -> int:
    """Upsert the `graphs` rows of `nids` (None: rebuild the table from every graph file)."""
    full = nids is None
    todo = graph_files(run_dir) if nids is None else list(nids)
    rows = [r for r in (graph_row(run_dir, n) for n in todo) if r is not None]
    with conn:
        if full:
            conn.execute("DELETE FROM graphs")
        conn.executemany(f"INSERT OR REPLACE INTO graphs ({GRAPH_COLUMNS}) VALUES "
                         "(?, ?, ?, ?, ?, ?)", rows)
    return len(rows)


__all__ = ["graph_files", "graph_row", "index_graphs", "load_graph", "save_graph"]
