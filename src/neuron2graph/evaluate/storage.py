"""Where evaluation results live in a run, and how a killed evaluation resumes.

Layout (all under RUN/eval/, never touching the full graphs of `n2g build` in RUN/graphs/):

    eval/neurons/L_N.json         one finished neuron (written atomically when it completes)
    eval/graphs/<method>/L/L_N.json   graphs built on the train half (n2g, official)
    eval/results.json, table.md, f1_by_layer.png   the report (rewritten at the end of each run)

A per-neuron file exists only once that neuron is completely evaluated. Resume, and the refusal to
mix results made with other settings, come from the stage manifest RUN/stages/eval.json
(`evaluate/stage.py`, `stages/manifest.py`).

The SQLite table `eval` mirrors the headline numbers of each neuron so that the browser can sort
neurons by graph F1 without reading JSON files; it is derived from the files (`rebuild_table`).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from neuron2graph.files import write_json_atomic
from neuron2graph.ids import NeuronId
from neuron2graph.store import layout

EVAL_DIR = "eval"

N2G_COLUMNS = ("f1_firing", "precision_firing", "recall_firing", "f1_nonfiring",
               "precision_nonfiring", "recall_nonfiring", "pearson")
"""The headline predictor's (N2G's) full metrics; other predictors get their F1 column only."""


def _predictor_columns() -> dict[str, str]:
    """Predictor name -> its F1 column, for every registered predictor but the headline one."""
    from neuron2graph.evaluate.predictors import PREDICTORS

    return {p.name: p.column for p in list(PREDICTORS.values())[1:]}


def eval_schema() -> str:
    """The `eval` table: N2G's metrics, one F1 column per registered predictor, test counts."""
    cols = [*(f"{c} REAL" for c in N2G_COLUMNS), "false_firing_rate REAL",
            *(f"{c} REAL" for c in _predictor_columns().values()),
            "n_test_tokens INTEGER NOT NULL", "n_test_firing INTEGER NOT NULL",
            "n_nodes INTEGER", "seed INTEGER NOT NULL", "evaluated_at TEXT NOT NULL"]
    body = ",\n    ".join(["layer INTEGER NOT NULL", "neuron INTEGER NOT NULL", *cols,
                           "PRIMARY KEY (layer, neuron)"])
    return f"CREATE TABLE IF NOT EXISTS eval (\n    {body}\n)"


EVAL_SCHEMA = eval_schema()
"""The schema with the built-in predictors (code calls `eval_schema()`). NULL means undefined
(e.g. precision with no predicted firing), never a made-up value."""


def eval_dir(run_path: Path) -> Path:
    return run_path / EVAL_DIR


def neuron_file(run_path: Path, nid: NeuronId) -> Path:
    return layout.eval_unit_file(run_path, nid)


def graph_file(run_path: Path, method: str, nid: NeuronId) -> Path:
    return layout.eval_graph_file(run_path, method, nid)


def load_neuron(run_path: Path, nid: NeuronId) -> dict[str, Any] | None:
    """The finished result of one neuron, or None (missing or unreadable: evaluate it again)."""
    path = neuron_file(run_path, nid)
    if not path.is_file():
        return None
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return row if isinstance(row, dict) else None


def save_neuron(run_path: Path, db: sqlite3.Connection | None, row: dict[str, Any]) -> None:
    """Write one finished neuron: its JSON file (atomic) and its `eval` row."""
    nid = NeuronId(int(row["layer"]), int(row["neuron"]))
    write_json_atomic(neuron_file(run_path, nid), row)
    if db is not None:
        upsert_row(db, row)


def ensure_table(db: sqlite3.Connection) -> None:
    with db:
        db.execute(eval_schema())


def upsert_row(db: sqlite3.Connection, row: dict[str, Any]) -> None:
    methods = row["methods"]
    n2g = methods.get("n2g", {})
    values: dict[str, Any] = {"layer": row["layer"], "neuron": row["neuron"]}
    values.update({c: n2g.get(c) for c in N2G_COLUMNS})
    values["false_firing_rate"] = (n2g.get("false_firing") or {}).get("rate")
    for name, column in _predictor_columns().items():
        values[column] = methods.get(name, {}).get("f1_firing")
    values.update({"n_test_tokens": row["test"]["n_tokens"],
                   "n_test_firing": row["test"]["n_firing"], "n_nodes": n2g.get("n_nodes"),
                   "seed": row["seed"],
                   "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds")})
    marks = ",".join("?" * len(values))
    with db:
        db.execute(f"INSERT OR REPLACE INTO eval ({','.join(values)}) VALUES ({marks})",
                   tuple(values.values()))


def rebuild_table(run_path: Path, db: sqlite3.Connection) -> int:
    """Derive the `eval` table from the per-unit files (`n2g reindex`); returns rows written."""
    rows = []
    for path in sorted((eval_dir(run_path) / "neurons").glob("*.json")):
        layer, _, neuron = path.stem.partition("_")
        if layer.isdigit() and neuron.isdigit():
            row = load_neuron(run_path, NeuronId(int(layer), int(neuron)))
            if row is not None:
                rows.append(row)
    with db:
        db.execute("DROP TABLE IF EXISTS eval")
        db.execute(eval_schema())
    for row in rows:
        upsert_row(db, row)
    return len(rows)


__all__ = [
    "EVAL_DIR",
    "EVAL_SCHEMA",
    "ensure_table",
    "eval_dir",
    "graph_file",
    "load_neuron",
    "neuron_file",
    "rebuild_table",
    "save_neuron",
    "upsert_row",
]
