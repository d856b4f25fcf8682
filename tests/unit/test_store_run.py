"""Run.open's one-line errors, graphs round trip and the index, on hand-made run folders."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from neuron2graph.errors import N2GError
from neuron2graph.ids import NeuronId
from neuron2graph.n2g.graph import NeuronGraph
from neuron2graph.n2g.graph_io import index_graphs, load_graph, save_graph
from neuron2graph.store import FORMAT, FORMAT_VERSION, Run
from neuron2graph.store.atomic import atomic_path
from neuron2graph.store.db import connect, table_names


def make_run(path: Path, **overrides: object) -> Path:
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "status": "complete",
                "layers": [0, 2], "n_layers": 3, "n_neurons": 8,
                "record": {"window": 16, "top_k": 5}}
    manifest.update(overrides)
    path.mkdir(parents=True, exist_ok=True)
    (path / "run.json").write_text(json.dumps(manifest))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(N2GError) as info:
        Run.open(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_open_errors(tmp_path: Path) -> None:
    assert "no such run directory" in error_of(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    assert "is a file" in error_of(tmp_path / "file")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "not a neuron2graph run" in error_of(empty)
    assert "n2g record" in error_of(empty)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "run.json").write_text("{not json")
    assert "corrupt" in error_of(corrupt)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "run.json").write_text(json.dumps({"format": "something-else"}))
    assert "not a neuron2graph run manifest" in error_of(foreign)
    other = make_run(tmp_path / "v2", format_version=2)
    assert "format version 2" in error_of(other)
    unfinished = make_run(tmp_path / "unfinished", status="recording")
    assert "has not finished" in error_of(unfinished)
    assert Run.open(unfinished, allow_incomplete=True).layers == [0, 2]


def test_check_layer_and_neuron(tmp_path: Path) -> None:
    run = Run.open(make_run(tmp_path / "r"))
    assert run.layers == [0, 2] and run.n_neurons == 8 and run.window_len == 16
    assert run.units == "neurons" and run.unit_site == "mlp"  # a run.json without `units`
    assert str(run.check("2:7")) == "2:7"
    assert str(run.check((0, 1))) == "0:1"
    with pytest.raises(N2GError, match="layer 1 was not recorded"):
        run.check("1:0")
    with pytest.raises(N2GError, match="out of range"):
        run.check("2:8")
    with pytest.raises(N2GError, match="LAYER:NEURON"):
        run.check("two")


def test_graph_round_trip_and_index(tmp_path: Path) -> None:
    run = Run.open(make_run(tmp_path / "r"))
    assert load_graph(run.path, NeuronId(2, 3)) is None
    graph = NeuronGraph("2:3")
    graph.add_path(" except", 0.9, [(" all", 0.8), None, ("x", 0.9)])
    path = save_graph(run.path, graph)
    assert path == tmp_path / "r" / "graphs" / "2" / "2_3.json" == run.graph_path("2:3")
    loaded = load_graph(run.path, NeuronId(2, 3))
    assert loaded is not None and loaded.to_json() == graph.to_json()
    conn = run.db()
    assert conn.execute("SELECT COUNT(*) FROM graphs").fetchone()[0] == 0  # files only
    assert index_graphs(run.path, conn) == 1  # the driver derives the rows from the files
    row = conn.execute("SELECT path, n_nodes, n_activating FROM graphs").fetchone()
    assert row == ("graphs/2/2_3.json", graph.n_nodes(), 1)
    index_graphs(run.path, conn, [NeuronId(2, 3)])  # upsert, not a duplicate row
    assert conn.execute("SELECT COUNT(*) FROM graphs").fetchone()[0] == 1
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {"neurons", "graphs"} <= set(table_names(conn))
    path.unlink()
    assert index_graphs(run.path, conn) == 0  # a full rebuild drops rows of vanished files
    assert conn.execute("SELECT COUNT(*) FROM graphs").fetchone()[0] == 0
    conn.close()


def test_other_stages_tables_and_transactions(tmp_path: Path) -> None:
    make_run(tmp_path / "r")
    conn = connect(tmp_path / "r")
    with conn:
        conn.execute("CREATE TABLE IF NOT EXISTS eval (layer INTEGER, f1 REAL)")
        conn.execute("INSERT INTO eval VALUES (0, 0.5)")
    with pytest.raises(sqlite3.IntegrityError), conn:
        conn.execute("INSERT INTO graphs VALUES (0, 0, 'a', 1, 1, 't')")
        conn.execute("INSERT INTO graphs VALUES (0, 0, 'b', 1, 1, 't')")  # same key: rolls back
    assert conn.execute("SELECT COUNT(*) FROM graphs").fetchone()[0] == 0
    assert conn.execute("SELECT f1 FROM eval").fetchone()[0] == 0.5
    conn.close()


def test_update_manifest(tmp_path: Path) -> None:
    run = Run.open(make_run(tmp_path / "r"))
    run.update_manifest(decode={"layers": [0]})
    assert json.loads((tmp_path / "r" / "run.json").read_text())["decode"] == {"layers": [0]}


def test_atomic_path_keeps_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
