"""`n2g build` and `n2g predict` on a run recorded from the planted tiny Llama saved to a folder."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from n2g_planted import LAYER, PAIR, SINGLE, A, B, C, save_planted

from neuron2graph.cli import app
from neuron2graph.testing import WORDS

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("n2gcli")
    model_dir = save_planted(root)
    rng = random.Random(1)
    filler = [w for w in WORDS if w not in (A, B, C)]
    words: list[str] = []
    for _ in range(200):
        chunk = [rng.choice(filler) for _ in range(8)]
        roll = rng.random()
        if roll < 0.3:
            chunk[rng.randrange(8)] = C
        elif roll < 0.7:
            i = rng.randrange(4, 8)
            chunk[i], chunk[i - rng.randrange(1, 4)] = B, A
        words += chunk
    corpus = root / "corpus.txt"
    corpus.write_text(" ".join(words) + "\n", encoding="utf-8")
    out = root / "run"
    res = runner.invoke(app, [
        "record", "--model", str(model_dir), "--corpus", str(corpus), "--out", str(out),
        "--layers", str(LAYER), "--window", "16", "--sample", "8", "--max-tokens", "0",
        "--no-progress", "--device", "cpu",
    ])
    assert res.exit_code == 0, res.output
    return out


def test_build_writes_graphs_and_resumes(run_dir: Path) -> None:
    neurons = f"{LAYER}:{SINGLE},{LAYER}:{PAIR}"
    res = runner.invoke(app, ["build", str(run_dir), "--neurons", neurons, "--device", "cpu",
                              "--quiet", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["status"] for r in rows] == ["built", "built"]
    assert all(r["token_layers"] > 0 for r in rows)
    pair = json.loads((run_dir / "graphs" / str(LAYER) / f"{LAYER}_{PAIR}.json").read_text())
    assert [n["token"] for n in pair["root"]] == [B]
    again = runner.invoke(app, ["build", str(run_dir), "--neurons", neurons, "--quiet", "--json"])
    assert [r["status"] for r in json.loads(again.stdout)] == ["skipped (exists)"] * 2
    # Other settings on a run that holds graphs: refused in one line, never mixed in silently.
    changed = runner.invoke(app, ["build", str(run_dir), "--neurons", neurons, "--mask", "unk",
                                  "--quiet"])
    assert changed.exit_code == 2, changed.output
    assert "mask: 'pad' -> 'unk'" in changed.output and "--overwrite" in changed.output
    manifest = json.loads((run_dir / "stages" / "build.json").read_text())
    assert manifest["status"] == "complete" and manifest["config"]["mask"] == "pad"
    text = runner.invoke(app, ["build", str(run_dir), "--neurons", f"{LAYER}:{PAIR}",
                               "--overwrite", "--no-augment", "--quiet"])
    assert text.exit_code == 0 and "built 1, skipped 0" in text.stdout


def test_build_samples_alive_neurons_and_reports_errors(run_dir: Path) -> None:
    res = runner.invoke(app, ["build", str(run_dir), "--layer", str(LAYER), "--sample", "1",
                              "--seed", "0", "--no-augment", "--quiet", "--json"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)) == 1
    bad = runner.invoke(app, ["build", str(run_dir)])
    assert bad.exit_code == 2 and "no neurons chosen" in bad.output
    bad = runner.invoke(app, ["build", str(run_dir), "--layer", "0"])
    assert bad.exit_code == 2 and "not recorded" in bad.output


def test_predict_with_model_and_from_graph_file(run_dir: Path) -> None:
    res = runner.invoke(app, ["build", str(run_dir), "--neurons", f"{LAYER}:{PAIR}",
                              "--no-augment", "--quiet"])
    assert res.exit_code == 0, res.output
    text = f"the {A} dog {B} sat {B}"
    res = runner.invoke(app, ["predict", str(run_dir), "--neuron", f"{LAYER}:{PAIR}",
                              "--text", text, "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["token"] for r in rows] == text.split()
    assert [r["predicted"] >= 0.5 for r in rows] == [False, False, False, True, False, False]
    assert [r["actual"] >= 0.5 for r in rows] == [False, False, False, True, False, False]
    plain = runner.invoke(app, ["predict", str(run_dir), "--neuron", f"{LAYER}:{PAIR}",
                                "--text", text, "--device", "cpu"])
    assert "predicted" in plain.stdout and "actual" in plain.stdout
    graph = run_dir / "graphs" / str(LAYER) / f"{LAYER}_{PAIR}.json"
    code = (
        "import sys, json\nfrom neuron2graph.cli import app\nfrom typer.testing import CliRunner\n"
        f"r = CliRunner().invoke(app, ['predict', '--graph', {str(graph)!r}, '--tokenizer', "
        f"{str(run_dir / 'tokenizer')!r}, '--text', {text!r}, '--json'])\n"
        "rows = json.loads(r.stdout)\n"
        "print(r.exit_code, [x['predicted'] >= 0.5 for x in rows].count(True), "
        "'actual' in rows[0], 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "1", "False", "False"]
    missing = runner.invoke(app, ["predict", str(run_dir), "--neuron", f"{LAYER}:7",
                                  "--text", text])
    assert missing.exit_code == 2 and "no graph for" in missing.output


def _snapshot(run_dir: Path) -> dict[str, list[tuple[object, ...]]]:
    import sqlite3

    conn = sqlite3.connect(run_dir / "index.sqlite")
    try:
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN "
            "('neurons', 'graphs', 'decode', 'graph_tokens', 'graph_stats')")]
        return {n: sorted(conn.execute(f"SELECT * FROM {n}").fetchall()) for n in names}
    finally:
        conn.close()


def test_index_is_derived_from_files(run_dir: Path) -> None:
    """Delete index.sqlite, `n2g reindex`: every table answers as before (it is a view)."""
    res = runner.invoke(app, ["build", str(run_dir), "--neurons", f"{LAYER}:{SINGLE}",
                              "--no-augment", "--quiet"])
    assert res.exit_code == 0, res.output
    spec = json.loads((run_dir / "run.json").read_text())["model"]["spec"]
    res = runner.invoke(app, ["decode", "--model", spec, "--out", str(run_dir), "--layers",
                              str(LAYER), "--top", "3", "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    assert runner.invoke(app, ["reindex", str(run_dir), "--no-progress"]).exit_code == 0
    before = _snapshot(run_dir)
    assert set(before) == {"neurons", "graphs", "decode", "graph_tokens", "graph_stats"}
    assert all(before.values()), {k: len(v) for k, v in before.items()}
    for f in run_dir.glob("index.sqlite*"):
        f.unlink()
    res = runner.invoke(app, ["reindex", str(run_dir), "--no-progress", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["tables"]["graphs"] == len(before["graphs"])
    assert _snapshot(run_dir) == before


def test_build_improved_method_calibrates_on_recorded_windows(run_dir: Path) -> None:
    """`--method improved`: the graph carries calibration over the unit's recorded windows and
    `predict` uses it by default (last in this module: it replaces the run's graphs)."""
    bad = runner.invoke(app, ["build", str(run_dir), "--neurons", f"{LAYER}:{PAIR}",
                              "--method", "bogus", "--quiet", "--overwrite"])
    assert bad.exit_code == 2 and "unknown method 'bogus'" in bad.output
    res = runner.invoke(app, ["build", str(run_dir), "--neurons", f"{LAYER}:{PAIR}",
                              "--method", "improved", "--no-augment", "--overwrite", "--quiet"])
    assert res.exit_code == 0, res.output
    graph = json.loads((run_dir / "graphs" / str(LAYER) / f"{LAYER}_{PAIR}.json").read_text())
    cal = graph["meta"]["calibration"]
    assert cal["positions"] > 0 and cal["backoff"] is True
    # In this corpus every B follows an A, so the calibrated B node also fires on a lone B
    # (back-off); the A ... B context itself is predicted as the model computes it.
    text = f"the {A} dog {B} sat"
    out = runner.invoke(app, ["predict", str(run_dir), "--neuron", f"{LAYER}:{PAIR}",
                              "--text", text, "--device", "cpu", "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    assert [r["predicted"] >= 0.5 for r in rows] == [False, False, False, True, False]
    assert [r["actual"] >= 0.5 for r in rows] == [False, False, False, True, False]
    paper = runner.invoke(app, ["predict", str(run_dir), "--neuron", f"{LAYER}:{PAIR}",
                                "--text", text, "--search", "longest", "--json"])
    assert paper.exit_code == 0, paper.output
