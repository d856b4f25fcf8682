"""The `decode` table of a run's index, and the reader the browser uses. No torch here.

Schema: one row per (layer, neuron, kind, rank) with the token id, its piece and its logit. The
browser calls `decoded_tokens(run, layer, neuron)` for a neuron page; it imports neither torch
nor transformers, so the web server stays light.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

DECODE_SCHEMA = """
CREATE TABLE IF NOT EXISTS decode (
    layer INTEGER NOT NULL,
    neuron INTEGER NOT NULL,
    kind TEXT NOT NULL,
    rank INTEGER NOT NULL,
    token_id INTEGER NOT NULL,
    token TEXT NOT NULL,
    logit REAL NOT NULL,
    PRIMARY KEY (layer, neuron, kind, rank)
) WITHOUT ROWID
"""

DecodeRow = tuple[int, int, str, int, int, str, float]
"""(layer, neuron, kind, rank, token_id, token, logit)"""


def ensure_table(conn: sqlite3.Connection) -> None:
    with conn:
        conn.execute(DECODE_SCHEMA)


def write_layer_rows(conn: sqlite3.Connection, layer: int, rows: Iterable[DecodeRow]) -> None:
    """Replace one layer's rows in a single transaction (a killed write leaves the old rows)."""
    ensure_table(conn)
    with conn:
        conn.execute("DELETE FROM decode WHERE layer = ?", (layer,))
        conn.executemany("INSERT INTO decode VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def rebuild_table(run: Any, conn: sqlite3.Connection) -> int:
    """Derive the whole `decode` table from RUN/decode/layer_*.safetensors (`n2g reindex`)."""
    from neuron2graph.store import layout

    with conn:
        conn.execute("DROP TABLE IF EXISTS decode")
    layers = sorted(int(p.stem.removeprefix("layer_"))
                    for p in layout.decode_dir(run.path).glob("layer_*.safetensors"))
    return index_layers(run, conn, layers)


def index_layers(run: Any, conn: sqlite3.Connection, layers: Sequence[int]) -> int:
    """Replace the `decode` rows of `layers` with those of their files. Token pieces come from
    the run's saved tokenizer, so no model and no torch are needed."""
    from safetensors import safe_open

    from neuron2graph.store import layout
    from neuron2graph.tokens import token_pieces

    ensure_table(conn)
    n = 0
    tokenizer = None
    for layer in layers:
        path = layout.decode_layer_file(run.path, layer)
        with safe_open(str(path), framework="numpy") as fh:
            names = [n for n in list(fh.keys()) if n.endswith("_ids")]
            kinds = {name[: -len("_ids")]: (fh.get_tensor(name),
                                             fh.get_tensor(name[: -len("_ids")] + "_values"))
                     for name in names}
        ids_all = sorted({int(t) for ids, _ in kinds.values() for t in ids.reshape(-1)})
        if tokenizer is None:
            tokenizer = run.tokenizer()
        pieces = dict(zip(ids_all, token_pieces(tokenizer, ids_all), strict=True))
        rows: list[DecodeRow] = [
            (layer, neuron, kind, rank, int(tid), pieces[int(tid)], float(val))
            for kind, (ids, vals) in kinds.items()
            for neuron in range(ids.shape[0])
            for rank, (tid, val) in enumerate(zip(ids[neuron], vals[neuron], strict=True))
        ]
        write_layer_rows(conn, layer, rows)
        n += len(rows)
    return n


def _connection(run_or_db: Any) -> tuple[sqlite3.Connection | None, bool]:
    """(connection, whether we opened it and must close it)."""
    if isinstance(run_or_db, sqlite3.Connection):
        return run_or_db, False
    if hasattr(run_or_db, "db"):  # a Run: `db()` opens a new connection that we must close
        return run_or_db.db(), True
    path = Path(run_or_db)
    if path.is_dir():
        path = path / "index.sqlite"
    if not path.is_file():
        return None, False
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0), True


def decoded_tokens(
    run_or_db: Any, layer: int, neuron: int, kinds: Sequence[str] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """One neuron's decoded tokens: `{kind: [{rank, token_id, token, logit}, ...]}`, best first,
    kinds in the order promote, suppress, read, read_gate.

    `run_or_db` is a `Run` (anything with `.db()`), an `sqlite3.Connection`, a run folder or an
    `index.sqlite` path. Returns `{}` when the run was never decoded (no table, or no rows for
    this neuron), so a page can simply skip the section.
    """
    conn, owned = _connection(run_or_db)
    if conn is None:
        return {}
    try:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'decode'"
        ).fetchone()
        if not exists:
            return {}
        rows = conn.execute(
            "SELECT kind, rank, token_id, token, logit FROM decode "
            "WHERE layer = ? AND neuron = ? ORDER BY kind, rank",
            (int(layer), int(neuron)),
        ).fetchall()
    finally:
        if owned:
            conn.close()
    order = {k: i for i, k in enumerate(("promote", "suppress", "read", "read_gate"))}
    rows.sort(key=lambda r: (order.get(r[0], len(order)), r[0], r[1]))
    out: dict[str, list[dict[str, Any]]] = {}
    for kind, rank, token_id, token, logit in rows:
        if kinds is not None and kind not in kinds:
            continue
        out.setdefault(str(kind), []).append(
            {"rank": int(rank), "token_id": int(token_id), "token": str(token),
             "logit": float(logit)}
        )
    return out


def decoded_layers(run_or_db: Any) -> list[int]:
    """The layers that have decode rows (empty when the run was never decoded)."""
    conn, owned = _connection(run_or_db)
    if conn is None:
        return []
    try:
        if not conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'decode'"
        ).fetchone():
            return []
        return [int(r[0]) for r in conn.execute("SELECT DISTINCT layer FROM decode ORDER BY 1")]
    finally:
        if owned:
            conn.close()
