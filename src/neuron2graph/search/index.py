"""The search index: every graph's activating and important tokens, as rows in the run's SQLite db.

Why rows rather than loading graphs: a query over 50,000 graphs must answer in milliseconds, so
search and similarity read only these tables (through their indexes), never the JSON files.

Tables (owned and created by this module, in ``RUN/index.sqlite``):

``graph_tokens(layer, neuron, role, token, norm, weight)``
    one row per distinct token of a graph and role. ``role`` is ``'activating'`` (a child of the
    root; ``weight`` = its normalised activation, ``node.activation``) or ``'important'`` (a context
    token anywhere below; ``weight`` = its max importance). ``norm`` is the token stripped and
    lower-cased, for case/space-insensitive search. Indexed on ``(role, token)``, ``(role, norm)``
    and (primary key) ``(layer, neuron, ...)``.
``graph_stats(layer, neuron, n_activating, n_important, n_components, n_nodes, sum_activating,
sum_important, max_activation, behaviours, file_mtime_ns, file_size)``
    per graph; ``n_components`` is the polysemanticity count (`search.components`), ``behaviours``
    a JSON list of the activating tokens of each component; the file stamp makes `index_run`
    incremental.
``graph_index_dirs(layer, mtime_ns)``
    the mtime of each ``graphs/L`` folder when it was last scanned: the cheap staleness check. Graph
    files are written atomically (temp file + rename), which always bumps the folder's mtime.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuron2graph.errors import N2GError
from neuron2graph.ids import NeuronId
from neuron2graph.n2g.graph import NeuronGraph, fold_token
from neuron2graph.search.components import activating_of, condensed_components
from neuron2graph.store import layout

ACTIVATING = "activating"
IMPORTANT = "important"
ROLES = (ACTIVATING, IMPORTANT)

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS graph_tokens (
    layer INTEGER NOT NULL,
    neuron INTEGER NOT NULL,
    role TEXT NOT NULL,
    token TEXT NOT NULL,
    norm TEXT NOT NULL,
    weight REAL NOT NULL,
    PRIMARY KEY (layer, neuron, role, token)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS graph_tokens_role_token ON graph_tokens (role, token, weight);
CREATE INDEX IF NOT EXISTS graph_tokens_role_norm ON graph_tokens (role, norm, weight);
CREATE TABLE IF NOT EXISTS graph_stats (
    layer INTEGER NOT NULL,
    neuron INTEGER NOT NULL,
    n_activating INTEGER NOT NULL,
    n_important INTEGER NOT NULL,
    n_components INTEGER NOT NULL,
    n_nodes INTEGER NOT NULL,
    sum_activating REAL NOT NULL,
    sum_important REAL NOT NULL,
    max_activation REAL NOT NULL,
    behaviours TEXT NOT NULL,
    file_mtime_ns INTEGER,
    file_size INTEGER,
    PRIMARY KEY (layer, neuron)
);
CREATE INDEX IF NOT EXISTS graph_stats_components ON graph_stats (n_components);
CREATE TABLE IF NOT EXISTS graph_index_dirs (
    layer INTEGER PRIMARY KEY,
    mtime_ns INTEGER NOT NULL
);
"""

Db = sqlite3.Connection | str | os.PathLike[str]


def connect(db: Db) -> sqlite3.Connection:
    """A connection with the search tables present: pass a connection, a db file or a run folder.

    A connection passed in (e.g. ``Run.db()``) is used as is; a path opens the file in WAL mode.
    """
    if isinstance(db, sqlite3.Connection):
        conn = db
    else:
        path = Path(db)
        if path.is_dir():
            path = layout.index_file(path)
        conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
    ensure_schema(conn)
    return conn


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the search tables when missing (a read-only check when they exist, so the browser
    can call `connect` per request without writing or committing anything)."""
    (have,) = conn.execute(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN "
        "('graph_tokens', 'graph_stats', 'graph_index_dirs')"
    ).fetchone()
    if have < 3:
        conn.executescript(SCHEMA_SQL)


def _split(nid: NeuronId | str) -> tuple[int, int]:
    n = nid if isinstance(nid, NeuronId) else NeuronId.parse(str(nid))
    return n.layer, n.neuron


def graph_rows(graph: NeuronGraph) -> list[tuple[str, str, str, float]]:
    """``(role, token, norm, weight)`` rows of one graph (see the module docstring)."""
    rows = [
        (ACTIVATING, tok, fold_token(tok), float(act))
        for tok, act in graph.activating_tokens.items()
    ]
    rows += [
        (IMPORTANT, tok, fold_token(tok), float(imp)) for tok, imp in graph.context_tokens().items()
    ]
    return rows


def index_graph(
    conn: sqlite3.Connection,
    graph: NeuronGraph,
    *,
    nid: NeuronId | str | None = None,
    stamp: tuple[int, int] | None = None,
    commit: bool = True,
) -> None:
    """Replace the index rows of one graph (its id from `nid`, else ``graph.neuron``).

    `stamp` is the graph file's ``(mtime_ns, size)``; `index_run` passes it to skip unchanged files.
    """
    layer, neuron = _split(nid if nid is not None else graph.neuron)
    rows = graph_rows(graph)
    comps = condensed_components(graph)
    acts = [w for role, _, _, w in rows if role == ACTIVATING]
    imps = [w for role, _, _, w in rows if role == IMPORTANT]
    conn.execute("DELETE FROM graph_tokens WHERE layer = ? AND neuron = ?", (layer, neuron))
    conn.executemany(
        "INSERT INTO graph_tokens VALUES (?, ?, ?, ?, ?, ?)",
        [(layer, neuron, *row) for row in rows],
    )
    conn.execute(
        "INSERT OR REPLACE INTO graph_stats VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            layer,
            neuron,
            len(acts),
            len(imps),
            len(comps),
            graph.n_nodes(),
            sum(acts),
            sum(imps),
            max(acts, default=0.0),
            json.dumps([activating_of(c) for c in comps], ensure_ascii=False),
            stamp[0] if stamp else None,
            stamp[1] if stamp else None,
        ),
    )
    if commit:
        conn.commit()


def remove_graph(conn: sqlite3.Connection, nid: NeuronId | str, *, commit: bool = True) -> None:
    """Drop one neuron from the index (its graph was deleted)."""
    layer, neuron = _split(nid)
    conn.execute("DELETE FROM graph_tokens WHERE layer = ? AND neuron = ?", (layer, neuron))
    conn.execute("DELETE FROM graph_stats WHERE layer = ? AND neuron = ?", (layer, neuron))
    if commit:
        conn.commit()


@dataclass
class IndexReport:
    """What `index_run` did."""

    indexed: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: list[str] = field(default_factory=list)
    """``"path: reason"`` for graph files that could not be read (left out of the index)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "indexed": self.indexed,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "failed": self.failed,
        }


def _run_parts(run: Any, conn: sqlite3.Connection | None) -> tuple[sqlite3.Connection, Path, bool]:
    """(connection, graphs folder, whether we opened the connection) from a `Run` or a path.

    A `Run` is anything with ``.path`` and ``.db()`` (`neuron2graph.store.run.Run`); a plain path
    is a run folder whose ``index.sqlite`` is opened directly.
    """
    path = Path(run.path) if hasattr(run, "path") and hasattr(run, "db") else Path(run)
    graphs = layout.graphs_dir(path)
    if conn is not None:
        return connect(conn), graphs, False
    if hasattr(run, "db"):
        return connect(run.db()), graphs, True
    return connect(path), graphs, True


def _layer_dirs(graphs_dir: Path) -> dict[int, Path]:
    if not graphs_dir.is_dir():
        return {}
    return {int(d.name): d for d in graphs_dir.iterdir() if d.is_dir() and d.name.isdigit()}


def is_stale(run: Any, *, conn: sqlite3.Connection | None = None) -> bool:
    """Cheap check (one stat per layer folder): have graphs been written since the last index?"""
    db, graphs_dir, owned = _run_parts(run, conn)
    try:
        on_disk = {layer: d.stat().st_mtime_ns for layer, d in _layer_dirs(graphs_dir).items()}
        seen = dict(db.execute("SELECT layer, mtime_ns FROM graph_index_dirs").fetchall())
    finally:
        if owned:
            db.close()
    return on_disk != seen


def index_run(
    run: Any,
    *,
    conn: sqlite3.Connection | None = None,
    force: bool = False,
    progress: bool = True,
) -> IndexReport:
    """Bring the index up to date with ``RUN/graphs``: add new and changed graphs, drop deleted.

    Incremental: a layer folder whose mtime is unchanged is skipped without listing it, and a file
    whose ``(mtime_ns, size)`` matches its stamp is not re-read. `force` re-reads everything.
    `run` is a `Run` or a run folder; `conn` an open connection to its db (else one is opened
    here and closed at the end).
    """
    db, graphs_dir, owned = _run_parts(run, conn)
    try:
        return _index_run(db, graphs_dir, force=force, progress=progress)
    finally:
        if owned:
            db.close()


def _index_run(
    conn: sqlite3.Connection, graphs_dir: Path, *, force: bool, progress: bool
) -> IndexReport:
    from tqdm import tqdm

    report = IndexReport()
    dirs = _layer_dirs(graphs_dir)
    seen_dirs = dict(conn.execute("SELECT layer, mtime_ns FROM graph_index_dirs").fetchall())
    for layer in set(seen_dirs) - set(dirs):  # a whole layer folder was deleted
        report.removed += _drop_layer(conn, layer)
    todo: list[tuple[int, Path, int]] = []
    for layer, d in sorted(dirs.items()):
        mtime = d.stat().st_mtime_ns  # taken before listing: a write during the scan shows later
        if force or seen_dirs.get(layer) != mtime:
            todo.append((layer, d, mtime))
    bar = tqdm(
        total=len(todo),
        desc="indexing graphs",
        unit="layer",
        file=sys.stderr,
        disable=not progress or not todo,
    )
    for layer, d, mtime in todo:
        stamps = {
            n: (m, s)
            for n, m, s in conn.execute(
                "SELECT neuron, file_mtime_ns, file_size FROM graph_stats WHERE layer = ?",
                (layer,),
            )
        }
        present: set[int] = set()
        for f in d.glob(f"{layer}_*.json"):
            stem = f.stem.split("_", 1)[1]
            if not stem.isdigit():
                continue
            neuron = int(stem)
            present.add(neuron)
            st = f.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if not force and stamps.get(neuron) == stamp:
                report.unchanged += 1
                continue
            try:
                graph = NeuronGraph.load(f)
            except N2GError as exc:
                report.failed.append(f"{f}: {exc}")
                continue
            index_graph(conn, graph, nid=NeuronId(layer, neuron), stamp=stamp, commit=False)
            report.indexed += 1
        for neuron in set(stamps) - present:
            remove_graph(conn, NeuronId(layer, neuron), commit=False)
            report.removed += 1
        conn.execute("INSERT OR REPLACE INTO graph_index_dirs VALUES (?, ?)", (layer, mtime))
        conn.commit()
        bar.update(1)
        bar.set_postfix(graphs=report.indexed + report.unchanged)
    bar.close()
    conn.commit()
    return report


def _drop_layer(conn: sqlite3.Connection, layer: int) -> int:
    n = conn.execute("SELECT COUNT(*) FROM graph_stats WHERE layer = ?", (layer,)).fetchone()[0]
    conn.execute("DELETE FROM graph_tokens WHERE layer = ?", (layer,))
    conn.execute("DELETE FROM graph_stats WHERE layer = ?", (layer,))
    conn.execute("DELETE FROM graph_index_dirs WHERE layer = ?", (layer,))
    conn.commit()
    return int(n)


def n_indexed(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM graph_stats").fetchone()[0])


__all__ = [
    "ACTIVATING",
    "IMPORTANT",
    "IndexReport",
    "connect",
    "ensure_schema",
    "graph_rows",
    "index_graph",
    "index_run",
    "is_stale",
    "n_indexed",
    "remove_graph",
]
