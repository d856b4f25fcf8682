"""The run-level index (incremental) and the `n2g search/similar/reindex` commands."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from neuron2graph.cli import app
from neuron2graph.n2g.graph import NeuronGraph
from neuron2graph.n2g.graph_io import save_graph
from neuron2graph.search import connect, index_run, is_stale, n_indexed, search_neurons
from neuron2graph.search.synthetic import example_graphs
from neuron2graph.store.run import Run

runner = CliRunner()


def make_run(path: Path, *, graphs: bool = True) -> Path:
    path.mkdir()
    manifest = {"format": "neuron2graph/run", "format_version": 1, "status": "complete",
                "layers": [0, 1, 2, 3], "n_layers": 4, "n_neurons": 16}  # fmt: skip
    (path / "run.json").write_text(json.dumps(manifest))
    if graphs:
        for g in example_graphs():
            save_graph(path, g)
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, [*args, "--no-progress"])
    return res.exit_code, res.stdout, res.stderr


def test_index_run_is_incremental(tmp_path: Path) -> None:
    run = Run.open(make_run(tmp_path / "run"))
    assert is_stale(run)
    rep = index_run(run, progress=False)
    assert (rep.indexed, rep.unchanged, rep.removed) == (5, 0, 0)
    assert not is_stale(run)
    assert index_run(run, progress=False).indexed == 0  # nothing changed: no folder listed
    g = NeuronGraph("0:1")
    g.add_path(" because", 1.0, [])
    save_graph(run.path, g)
    os.remove(run.graph_path("2:5"))
    assert is_stale(run)
    rep = index_run(run, progress=False)
    assert (rep.indexed, rep.unchanged, rep.removed) == (1, 1, 1)
    conn = connect(run.db())
    assert n_indexed(conn) == 4
    assert [r["id"] for r in search_neurons(conn, activating=[" because"])] == ["0:1"]
    (run.graph_path("1:3")).write_text("{not json")
    rep = index_run(run, progress=False, force=True)
    assert len(rep.failed) == 1 and "1_3.json" in rep.failed[0]
    conn.close()


def test_search_command_indexes_then_answers(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    code, out, _ = invoke("search", str(run), "--activating", " except", "--important", " all")
    assert code == 0, out
    assert out.splitlines()[0].startswith("3 neurons match")
    assert "0:1" in out.splitlines()[2]
    code, out, _ = invoke("search", str(run), "--any", " except", "--limit", "2", "--json")
    doc = json.loads(out)
    assert [r["id"] for r in doc["results"]] == ["0:1", "2:5"]
    code, out, _ = invoke("search", str(run), "-a", "except", "--fold", "--json")
    assert len(json.loads(out)["results"]) == 4
    code, out, _ = invoke("search", str(run), "--min-components", "2", "--json")
    assert [r["id"] for r in json.loads(out)["results"]] == ["2:5", "0:2"]


def test_similar_commands(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    code, out, _ = invoke("similar", str(run), "--neuron", "0:1", "--json")
    assert code == 0
    res = json.loads(out)["results"]
    assert res[0]["id"] == "2:5" and res[0]["relation"] == "subset"
    code, out, _ = invoke("similar", str(run), "--all", "--threshold", "0.5")
    assert code == 0
    assert out.splitlines()[0] == "1 pairs with similarity >= 0.5"
    code, out, _ = invoke("reindex", str(run), "--force", "--json")
    assert json.loads(out)["indexed"] == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "{run}"], "no search clause given"),
        (["search", "{empty}", "-a", " x"], "has no graphs: build some with `n2g build`"),
        (["similar", "{run}", "--neuron", "3:9"], "neuron 3:9 has no indexed graph"),
        (["similar", "{run}", "--neuron", "nope"], "bad neuron id"),
        (["similar", "{run}"], "pass either --neuron L:N or --all"),
        (["reindex", "{empty}"], "has no graphs"),
        (["search", "{missing}", "-a", " x"], "no such run directory"),
    ],
)
def test_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    paths = {"run": make_run(tmp_path / "run"), "empty": make_run(tmp_path / "e", graphs=False),
             "missing": tmp_path / "missing"}  # fmt: skip
    code, _out, err = invoke(*[a.format(**paths) for a in args])
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
