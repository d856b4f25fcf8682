"""The explanation index: FTS5 search, upsert per (unit, explainer), rebuild from files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from neuron2graph.errors import N2GError
from neuron2graph.explain import storage
from neuron2graph.ids import NeuronId


def _expl(unit: str, explainer: str, text: str | None, status: str = "ok") -> dict:
    return {"unit": unit, "explainer": explainer, "text": text, "status": status, "model": None}


def test_fts_search_upsert_and_reindex(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "index.sqlite")
    storage.ensure_tables(conn)
    storage.index_explanation(conn, _expl("0:1", "graph", "Fires on ` except` after ` all`."))
    storage.index_explanation(conn, _expl("0:2", "local", "Mentions of cats and kittens"))
    storage.index_explanation(conn, _expl("0:3", "local", None, "unparseable"))
    assert [r["unit"] for r in storage.search_explanations(conn, "except")] == ["0:1"]
    assert [r["unit"] for r in storage.search_explanations(conn, "cats")] == ["0:2"]
    # a new text for the same unit and explainer replaces the old one
    storage.index_explanation(conn, _expl("0:2", "local", "Numbers in tables"))
    assert storage.search_explanations(conn, "cats") == []
    assert conn.execute("SELECT status FROM explanations WHERE neuron = 3").fetchone() == (
        "unparseable",)
    with pytest.raises(N2GError, match="explanation query"):
        storage.search_explanations(conn, '"unbalanced')

    storage.save(storage.explanation_file(tmp_path, "tokens", NeuronId(1, 5)),
                 _expl("1:5", "tokens", "Fires on the tokens ` river`."))
    assert storage.reindex(tmp_path, conn) == 1
    assert [r["unit"] for r in storage.search_explanations(conn, "river")] == ["1:5"]
    assert storage.search_explanations(conn, "except") == []  # only the files survive
