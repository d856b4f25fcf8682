"""Where evaluation results live in a run, and how a killed evaluation resumes.

Layout (all under RUN/eval/, never touching the full graphs of `n2g build` in RUN/graphs/):

    eval/settings.json            the per-neuron protocol settings the results below were made with
    eval/neurons/L_N.json         one finished neuron (written atomically when it completes)
    eval/graphs/<method>/L/L_N.json   graphs built on the train half (n2g, official)
    eval/results.json, table.md, f1_by_layer.png   the report (rewritten at the end of each run)

A per-neuron file exists only once that neuron is completely evaluated, so resuming is "skip the
neurons whose file exists". Mixing results made with different settings would silently corrupt the
averages, so a run whose `settings.json` differs stops with a one-line error unless `--overwrite`.

The SQLite table `eval` mirrors the headline numbers of each neuron so that the browser can sort
neurons by graph F1 without reading JSON files.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from neuron2graph.errors import N2GError
from neuron2graph.ids import NeuronId
from neuron2graph.store.atomic import write_json_atomic

EVAL_DIR = "eval"

EVAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS eval (
    layer INTEGER NOT NULL,
    neuron INTEGER NOT NULL,
    f1_firing REAL,
    precision_firing REAL,
    recall_firing REAL,
    f1_nonfiring REAL,
    precision_nonfiring REAL,
    recall_nonfiring REAL,
    pearson REAL,
    false_firing_rate REAL,
    official_f1_firing REAL,
    token_f1_firing REAL,
    ngram_f1_firing REAL,
    n_test_tokens INTEGER NOT NULL,
    n_test_firing INTEGER NOT NULL,
    n_nodes INTEGER,
    seed INTEGER NOT NULL,
    evaluated_at TEXT NOT NULL,
    PRIMARY KEY (layer, neuron)
)
"""
"""NULL means undefined (e.g. precision with no predicted firing), never a made-up value."""


def eval_dir(run_path: Path) -> Path:
    return run_path / EVAL_DIR


def neuron_file(run_path: Path, nid: NeuronId) -> Path:
    return eval_dir(run_path) / "neurons" / f"{nid.layer}_{nid.neuron}.json"


def graph_file(run_path: Path, method: str, nid: NeuronId) -> Path:
    name = f"{nid.layer}_{nid.neuron}.json"
    return eval_dir(run_path) / "graphs" / method / str(nid.layer) / name


def check_settings(run_path: Path, settings: dict[str, Any], *, overwrite: bool) -> None:
    """Start, resume or refuse: compare with the settings of the results already in RUN/eval."""
    root = eval_dir(run_path)
    path = root / "settings.json"
    if overwrite and root.exists():
        shutil.rmtree(root)
        _clear_table(run_path)
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            old = None
        if old != settings:
            diff = _describe_diff(old, settings)
            raise N2GError(
                f"{root} holds results made with other settings ({diff}): re-run with the same "
                "options to resume, or pass --overwrite to discard them"
            )
        return
    write_json_atomic(path, settings)


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(obj, dict):
        return {prefix: obj}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _describe_diff(old: Any, new: dict[str, Any]) -> str:
    """The differing settings as `dotted.key: old then, new now` (first three)."""
    if not isinstance(old, dict):
        return "unreadable settings.json"
    a, b = _flatten(old), _flatten(new)
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    parts = [f"{k}: {a.get(k)!r} then, {b.get(k)!r} now" for k in keys[:3]]
    more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
    return "; ".join(parts) + more if parts else "unknown difference"


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
        db.execute(EVAL_SCHEMA)


def upsert_row(db: sqlite3.Connection, row: dict[str, Any]) -> None:
    methods = row["methods"]
    n2g = methods.get("n2g", {})

    def f1(method: str) -> float | None:
        return methods.get(method, {}).get("f1_firing")

    values = (
        row["layer"], row["neuron"],
        n2g.get("f1_firing"), n2g.get("precision_firing"), n2g.get("recall_firing"),
        n2g.get("f1_nonfiring"), n2g.get("precision_nonfiring"), n2g.get("recall_nonfiring"),
        n2g.get("pearson"), (n2g.get("false_firing") or {}).get("rate"),
        f1("official"), f1("token"), f1("5gram"),
        row["test"]["n_tokens"], row["test"]["n_firing"], n2g.get("n_nodes"), row["seed"],
        datetime.now(UTC).isoformat(timespec="seconds"),
    )
    marks = ",".join("?" * len(values))
    with db:
        db.execute(f"INSERT OR REPLACE INTO eval VALUES ({marks})", values)


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
        db.execute(EVAL_SCHEMA)
    for row in rows:
        upsert_row(db, row)
    return len(rows)


def _clear_table(run_path: Path) -> None:
    from neuron2graph.store import db as dbmod

    if not (run_path / dbmod.DB_NAME).is_file():
        return
    conn = dbmod.connect(run_path)
    try:
        with conn:
            conn.execute("DROP TABLE IF EXISTS eval")
    finally:
        conn.close()


__all__ = [
    "EVAL_DIR",
    "EVAL_SCHEMA",
    "check_settings",
    "ensure_table",
    "eval_dir",
    "graph_file",
    "load_neuron",
    "neuron_file",
    "rebuild_table",
    "save_neuron",
    "upsert_row",
]
