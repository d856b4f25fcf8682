"""`n2g explain` / `n2g score` / `n2g search --explanation` on the planted tiny Llama.

The planted units have known behaviour, so the bench must show it: the graph (which knows 1:1
needs `all` before `except`) beats the token lookup on 1:1's hard negatives (lone `except`s).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from explain_fixtures import EXAMPLE_OPTS, record_planted

from neuron2graph.cli import app

runner = CliRunner()
UNITS = "1:0,1:1"


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return record_planted(tmp_path_factory.mktemp("explaincli"))


def _cli(*args: str) -> dict:
    quiet = [] if args[0] in ("search", "reindex") else ["--quiet"]
    res = runner.invoke(app, [*args, "--json", *quiet])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_explain_score_search(planted: tuple[Path, Path]) -> None:
    run, model_dir = planted
    doc = _cli("explain", str(run), "--neurons", UNITS, "--explainer", "tokens", *EXAMPLE_OPTS)
    assert doc["explained"] == 2 and doc["status"] == {"ok": 2}
    tok = json.loads((run / "explain/explanations/tokens/1_0.json").read_text())
    assert "cat" in tok["text"]
    doc = _cli("explain", str(run), "--neurons", UNITS, "--explainer", "graph",
               "--augmenter", "none", *EXAMPLE_OPTS)
    assert doc["explained"] == 2
    pair = json.loads((run / "explain/explanations/graph/1_1.json").read_text())["text"]
    assert "except" in pair and "all" in pair  # the sentence names the context
    again = _cli("explain", str(run), "--neurons", UNITS, "--explainer", "graph",
                 "--augmenter", "none", *EXAMPLE_OPTS)
    assert again["reused"] == 2 and again["explained"] == 0
    other = runner.invoke(app, ["explain", str(run), "--neurons", UNITS, "--explainer", "graph",
                                *EXAMPLE_OPTS, "--quiet"])  # another augmenter: refused
    assert other.exit_code == 2 and "augmenter: None -> 'causal'" in other.output
    manifests = sorted(p.name for p in (run / "stages").glob("*.json"))
    assert {"explain-graph.json", "explain-tokens.json"} <= set(manifests)

    doc = _cli("score", str(run), "--neurons", UNITS, "--judge", "local", "--judge-model",
               str(model_dir), "--scorers", "detection,fuzz,simulation,surprisal",
               "--surprisal-model", str(model_dir), *EXAMPLE_OPTS)
    assert doc["units"] == 2 and doc["computed"] == 2
    rows = {u: json.loads((run / f"explain/scores/1_{u}.json").read_text()) for u in (0, 1)}
    for row in rows.values():
        methods = row["methods"]
        assert {"graph", "token", "5gram", "sentence:graph", "sentence:tokens"} <= set(methods)
        assert methods["graph"]["detection"]["auroc"] >= 0.95
        assert methods["graph"]["simulation"]["pearson"] > 0.8
        sent = methods["sentence:graph"]
        assert sent["detection"]["n"] + sent["detection"]["failed"] == row["examples"]["test"] + \
            row["examples"]["negative"] + row["examples"]["hard_negative"]
        assert "auroc" in sent["surprisal"]
    pair_rows = rows[1]
    assert pair_rows["examples"]["hard_negative"] > 0
    graph_ba = pair_rows["methods"]["graph"]["detection"]["balanced_accuracy"]
    token_ba = pair_rows["methods"]["token"]["detection"]["balanced_accuracy"]
    assert graph_ba > token_ba  # lone `except`s fool the token lookup, not the graph
    assert (run / "explain/table.md").read_text().count("| graph |") == 1

    found = _cli("search", str(run), "--explanation", "cat")
    assert {r["unit"] for r in found["results"]} >= {"1:0"}

    import sqlite3

    with sqlite3.connect(run / "index.sqlite") as conn:  # the index is derived: drop, rebuild
        conn.execute("DELETE FROM explanations_fts")
    doc = _cli("reindex", str(run))
    assert doc["explanations_indexed"] == 4
    assert {r["unit"] for r in _cli("search", str(run), "--explanation", "cat")["results"]} >= {
        "1:0"}

    from fastapi.testclient import TestClient

    from neuron2graph.web.app import create_app

    client = TestClient(create_app(run))
    page = client.get("/neurons/1:1")
    assert page.status_code == 200 and "Explanations" in page.text
    assert "sentence:graph" in page.text and "hard negative" in page.text
    api = client.get("/api/neurons/1:1").json()
    assert {e["explainer"] for e in api["explain"]["explanations"]} == {"graph", "tokens"}


def test_other_settings_refuse_to_mix(planted: tuple[Path, Path]) -> None:
    run, _ = planted
    _cli("explain", str(run), "--neurons", "1:0", "--explainer", "tokens", *EXAMPLE_OPTS)
    res = runner.invoke(app, ["explain", str(run), "--neurons", "1:0", "--explainer", "tokens",
                              "--ctx-len", "9"])
    assert res.exit_code == 2 and "other settings" in res.output and "--overwrite" in res.output
