"""The run's SQLite index (`index.sqlite`): a view derived from the run's files.

Stages write files only; the driver of a stage (at its end) or `n2g reindex` (at any time) derives
the tables from those files, so the index can be deleted and rebuilt. WAL mode lets the browser
read while the one writer writes; every multi-row write happens inside one transaction. This
module creates the tables of the store itself (`neurons`, from the recorded layer files, and
`graphs`, from the graph files); other stages create theirs with `CREATE TABLE IF NOT EXISTS`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from neuron2graph.store import layout

DB_NAME = layout.INDEX

NEURONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS neurons (
    layer INTEGER NOT NULL,
    neuron INTEGER NOT NULL,
    max_act REAL NOT NULL,
    min_act REAL NOT NULL,
    mean_act REAL NOT NULL,
    density REAL NOT NULL,
    firing_rate REAL NOT NULL,
    n_examples INTEGER NOT NULL,
    PRIMARY KEY (layer, neuron)
)
"""

GRAPHS_SCHEMA = """
CREATE TABLE IF NOT EXISTS graphs (
    layer INTEGER NOT NULL,
    neuron INTEGER NOT NULL,
    path TEXT NOT NULL,
    n_nodes INTEGER NOT NULL,
    n_activating INTEGER NOT NULL,
    built_at TEXT NOT NULL,
    PRIMARY KEY (layer, neuron)
)
"""

NEURON_COLUMNS = (
    "layer", "neuron", "max_act", "min_act", "mean_act", "density", "firing_rate", "n_examples",
)


def connect(run_dir: str | Path) -> sqlite3.Connection:
    """Open the run's index in WAL mode; safe to share across threads (the web server does)."""
    conn = sqlite3.connect(
        Path(run_dir) / DB_NAME, timeout=30.0, check_same_thread=False, isolation_level=None
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("BEGIN")
    conn.execute(NEURONS_SCHEMA)
    conn.execute(GRAPHS_SCHEMA)
    conn.execute("COMMIT")
    # Back to Python's default transaction handling, which callers expect (`with conn:` commits).
    conn.isolation_level = "DEFERRED"
    return conn


def write_neurons(conn: sqlite3.Connection, layer: int, rows: Iterable[Sequence[Any]]) -> None:
    """Replace the `neurons` rows of one layer in a single transaction."""
    marks = ",".join("?" * len(NEURON_COLUMNS))
    with conn:
        conn.execute("DELETE FROM neurons WHERE layer = ?", (layer,))
        conn.executemany(
            f"INSERT INTO neurons ({','.join(NEURON_COLUMNS)}) VALUES ({marks})", rows
        )


def table_names(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    return [str(r[0]) for r in rows]
