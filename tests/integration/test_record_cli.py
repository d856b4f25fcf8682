"""`n2g record`, `n2g info` and `n2g examples` through typer's CliRunner on a saved tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from record_fixtures import save_tiny_model, write_corpus
from typer.testing import CliRunner

from neuron2graph.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    base = tmp_path_factory.mktemp("cli")
    model = save_tiny_model(base / "model", family="gpt2")
    corpus = write_corpus(base / "corpus.txt", n=30)
    args = ["record", "--model", str(model), "--corpus", str(corpus), "--layers", "0-1",
            "--window", "16", "--top-k", "4", "--sample", "6", "--batch-size", "8",
            "--max-tokens", "1500", "--no-progress"]
    result = runner.invoke(app, [*args, "--out", str(base / "run"), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["layers"] == [0, 1] and info["tokens"] >= 1500 and info["graphs"] == 0
    return base, args


def test_info(recorded: tuple[Path, list[str]]) -> None:
    base, _ = recorded
    result = runner.invoke(app, ["info", str(base / "run"), "--json"])
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["family"] == "GPT-2" and info["top_k"] == 4 and info["window_len"] == 16
    assert set(info["tables"]) >= {"neurons", "graphs"} and info["tables"]["neurons"] == 2 * 64
    text = runner.invoke(app, ["info", str(base / "run")])
    assert text.exit_code == 0 and "layers    0,1  (64 neurons each)" in text.stdout


def test_examples(recorded: tuple[Path, list[str]]) -> None:
    base, _ = recorded
    result = runner.invoke(app, ["examples", str(base / "run"), "--neuron", "1:10", "--top",
                                 "3", "--sample", "2", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert len(doc["top"]) == 3 and len(doc["quantiles"]) == 2
    top = doc["top"][0]
    assert top["max_act"] == pytest.approx(doc["stats"]["max_act"])
    assert len(top["tokens"]) == len(top["acts"]) == len(top["token_ids"])
    shown = runner.invoke(app, ["examples", str(base / "run"), "--neuron", "1:10"])
    assert shown.exit_code == 0 and "neuron 1:10: max" in shown.stdout
    assert shown.stdout.count("\n# ") + shown.stdout.startswith("# ") >= 4


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--top-k", "0"], "--top-k 0 is invalid"),
        (["--layers", "0,7"], "layer 7 is out of range"),
        (["--corpus", "/nonexistent/corpus.txt"], "nonexistent"),
        (["--window", "1"], "too short"),
    ],
)
def test_record_errors(
    recorded: tuple[Path, list[str]], tmp_path: Path, extra: list[str], message: str
) -> None:
    _, args = recorded
    result = runner.invoke(app, [*args, *extra, "--out", str(tmp_path / "bad")])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and message in errors[0]
    assert "Traceback" not in result.stderr


def test_examples_errors(recorded: tuple[Path, list[str]], tmp_path: Path) -> None:
    base, _ = recorded
    cases = [
        (["examples", str(base / "run"), "--neuron", "4:0"], "layer 4 was not recorded"),
        (["examples", str(base / "run"), "--neuron", "0:64"], "out of range"),
        (["examples", str(base / "run"), "--neuron", "zero"], "LAYER:NEURON"),
        (["examples", str(tmp_path), "--neuron", "0:1"], "not a neuron2graph run"),
        (["info", str(tmp_path / "none")], "no such run directory"),
    ]
    for argv, message in cases:
        result = runner.invoke(app, argv)
        assert result.exit_code == 2 and message in result.stderr, (argv, result.output)
