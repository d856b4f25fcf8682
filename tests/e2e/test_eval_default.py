"""`n2g eval` end to end on the real default model (small: layer 0, a few thousand tokens)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from neuron2graph.cli import app
from neuron2graph.evaluate.report import render_table

pytestmark = pytest.mark.slow
runner = CliRunner()


def test_eval_default_model_layer0(tmp_path: Path) -> None:
    run = tmp_path / "run"
    res = runner.invoke(app, ["record", "-o", str(run), "--layers", "0", "--max-tokens", "3000",
                              "--sample", "16", "--no-progress", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["eval", str(run), "--layers", "0", "--per-layer", "2", "--seed", "0",
                              "--augmenter", "none", "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    layer = doc["aggregate"]["layers"]["0"]
    assert layer["n_neurons"] == 2
    for method in ("n2g", "official", "token", "5gram"):
        f1 = layer["methods"][method]["f1_firing"]
        assert f1["n"] + f1["n_undefined"] == 2
        assert f1["mean"] is None or 0.0 <= f1["mean"] <= 1.0
    assert doc["timings"]["mean_neuron_s"] > 0
    rows = json.loads((run / "eval" / "results.json").read_text())["neurons"]
    for row in rows:
        assert 0 < row["test"]["n_tokens"] <= 10 * 64  # ten windows of at most 64 tokens
        assert set(row["train_windows"]).isdisjoint(row["test_windows"])
        assert row["sample"]["n_windows"] <= 16
    assert "| 0 | 2 |" in render_table(run)
    assert (run / "eval" / "f1_by_layer.png").stat().st_size > 1000
