"""Where explanations and scores live in a run, and the FTS5 index over explanation text.

Layout (every file written atomically, one per unit, so a killed run keeps what finished and a
re-run skips it; which units are done, and with which settings, is in the stage manifests
RUN/stages/explain-<explainer>.json and RUN/stages/score.json):

    RUN/explain/examples/L_N.json                the unit's contexts (train, test, negatives)
    RUN/explain/graphs/L_N.json                  N2G graph built on the train contexts
    RUN/explain/explanations/<explainer>/L_N.json
    RUN/explain/scores/L_N.json                  every method's scores on the unit
    RUN/explain/table.md                         the per-layer score table (n2g score)

Runs made before the stage manifests hold RUN/explain/settings.json (the example settings);
`explain/stage.py` adopts their files on first use (`LEGACY_SETTINGS`).

SQLite (`RUN/index.sqlite`), derived from the files by the stages' `finish` and `n2g reindex`:
`explanations(layer, neuron, explainer, text, status, model)`, the FTS5 table
`explanations_fts(text, unit, explainer)` for `n2g search --explanation`, and
`explanation_scores(layer, neuron, method, scorer, metric, value)` (headline metrics).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from neuron2graph.errors import N2GError
from neuron2graph.ids import NeuronId
from neuron2graph.store import layout
from neuron2graph.store.atomic import write_json_atomic

ROOT = layout.EXPLAIN_DIR
LEGACY_SETTINGS = "settings.json"
"""The example settings of a run explained before stage manifests (read once, then removed)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS explanations (
    layer INTEGER NOT NULL,
    neuron INTEGER NOT NULL,
    explainer TEXT NOT NULL,
    text TEXT,
    status TEXT NOT NULL,
    model TEXT,
    PRIMARY KEY (layer, neuron, explainer)
);
CREATE VIRTUAL TABLE IF NOT EXISTS explanations_fts USING fts5(text, unit UNINDEXED,
    explainer UNINDEXED);
CREATE TABLE IF NOT EXISTS explanation_scores (
    layer INTEGER NOT NULL,
    neuron INTEGER NOT NULL,
    method TEXT NOT NULL,
    scorer TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (layer, neuron, method, scorer, metric)
);
"""


# Paths live in store/layout.py (one place for the whole run directory); these are the names the
# explain stages use for them.
root = layout.explain_dir
examples_file = layout.explain_examples_file
graph_file = layout.explain_graph_file
explanations_dir = layout.explanations_dir
explanation_file = layout.explanation_file
scores_dir = layout.scores_dir
scores_file = layout.scores_file
table_file = layout.score_table_file


def read_json(path: Path) -> Any:
    """The file's JSON, or None when it is missing or damaged (then it is recomputed)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def legacy_settings(run_dir: Path) -> dict[str, Any] | None:
    """The example settings of a run explained before stage manifests (None: none)."""
    data = read_json(root(run_dir) / LEGACY_SETTINGS)
    return data if isinstance(data, dict) else None


def unit_files(folder: Path) -> list[NeuronId]:
    """Units that have an `L_N.json` file in `folder`."""
    out = []
    for path in sorted(folder.glob("*_*.json")) if folder.is_dir() else []:
        layer, _, neuron = path.stem.partition("_")
        if layer.isdigit() and neuron.isdigit():
            out.append(NeuronId(int(layer), int(neuron)))
    return out


def save(path: Path, obj: Any) -> None:
    write_json_atomic(path, obj)


def explainers_done(run_dir: Path) -> list[str]:
    folder = explanations_dir(run_dir)
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


# --------------------------------------------------------------------------------- index
def ensure_tables(conn: sqlite3.Connection) -> None:
    try:
        conn.executescript(SCHEMA)
    except sqlite3.OperationalError as exc:  # an SQLite built without FTS5
        raise N2GError(f"this Python's SQLite cannot create the explanation index ({exc}): "
                       "use a Python whose sqlite3 has FTS5") from None


def index_explanation(conn: sqlite3.Connection, expl: dict[str, Any]) -> None:
    nid = NeuronId.parse(expl["unit"])
    with conn:
        conn.execute("INSERT OR REPLACE INTO explanations VALUES (?, ?, ?, ?, ?, ?)",
                     (nid.layer, nid.neuron, expl["explainer"], expl.get("text"),
                      expl["status"], expl.get("model")))
        conn.execute("DELETE FROM explanations_fts WHERE unit = ? AND explainer = ?",
                     (expl["unit"], expl["explainer"]))
        if expl.get("text"):
            conn.execute("INSERT INTO explanations_fts (text, unit, explainer) VALUES (?, ?, ?)",
                         (expl["text"], expl["unit"], expl["explainer"]))


KEYS = (("detection", "auroc"), ("detection", "balanced_accuracy"), ("fuzz", "auroc"),
        ("simulation", "pearson"), ("embedding", "auroc"), ("surprisal", "auroc"),
        ("intervention", "auroc"))
"""The headline metric of each scorer: table columns, web page columns, SQLite rows."""


def index_scores(conn: sqlite3.Connection, row: dict[str, Any]) -> None:
    """Replace a unit's `explanation_scores` rows by the headline metrics of its scores file."""
    nid = NeuronId.parse(row["unit"])
    values = [(nid.layer, nid.neuron, method, scorer, metric, float(v))
              for method, entry in sorted(row.get("methods", {}).items())
              for scorer, metric in KEYS
              if (v := (entry.get(scorer) or {}).get(metric)) is not None]
    with conn:
        conn.execute("DELETE FROM explanation_scores WHERE layer = ? AND neuron = ?",
                     (nid.layer, nid.neuron))
        conn.executemany("INSERT INTO explanation_scores VALUES (?, ?, ?, ?, ?, ?)", values)


def reindex_scores(run_dir: Path, conn: sqlite3.Connection) -> int:
    """Rebuild `explanation_scores` from RUN/explain/scores/*.json; returns units indexed."""
    ensure_tables(conn)
    with conn:
        conn.execute("DELETE FROM explanation_scores")
    n = 0
    for nid in unit_files(scores_dir(run_dir)):
        data = read_json(scores_file(run_dir, nid))
        if isinstance(data, dict) and "unit" in data:
            index_scores(conn, data)
            n += 1
    return n


def reindex(run_dir: Path, conn: sqlite3.Connection) -> int:
    """Rebuild both tables from the files (the files are the truth; the index is derived)."""
    ensure_tables(conn)
    with conn:
        conn.execute("DELETE FROM explanations")
        conn.execute("DELETE FROM explanations_fts")
    n = 0
    for explainer in explainers_done(run_dir):
        for path in sorted(explanations_dir(run_dir, explainer).glob("*.json")):
            data = read_json(path)
            if isinstance(data, dict) and "unit" in data:
                index_explanation(conn, data)
                n += 1
    return n


def search_explanations(conn: sqlite3.Connection, query: str, limit: int = 20) -> list[dict[
        str, Any]]:
    """Units whose explanation matches the FTS5 query, best match first."""
    ensure_tables(conn)
    try:
        rows = conn.execute(
            "SELECT unit, explainer, text, bm25(explanations_fts) AS rank FROM explanations_fts "
            "WHERE explanations_fts MATCH ? ORDER BY rank LIMIT ?", (query, limit)).fetchall()
    except sqlite3.OperationalError as exc:
        raise N2GError(f"cannot read the explanation query {query!r} ({exc}): quote phrases "
                       'like "\\"fires on\\"" and use plain words') from None
    return [{"unit": u, "explainer": e, "text": t, "rank": float(r)} for u, e, t, r in rows]


__all__ = ["KEYS", "LEGACY_SETTINGS", "ensure_tables", "examples_file", "explainers_done",
           "explanation_file", "graph_file", "index_explanation", "index_scores",
           "legacy_settings", "read_json", "reindex", "reindex_scores", "root", "save",
           "scores_file", "search_explanations", "unit_files"]
