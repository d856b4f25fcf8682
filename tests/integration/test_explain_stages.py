"""`n2g explain` / `n2g score` as stages on the planted tiny Llama: per-unit resume, refusal of a
changed config (one line naming the field), --overwrite, migration of a run made before stage
manifests, `n2g status`, the derived score rows, and the intervention scorer recovering what the
planted units do (steerable fixture: 1:0 makes the model say `cat`, 1:1 `except`).
"""

from __future__ import annotations

import json
import sqlite3
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from explain_fixtures import EXAMPLE_OPTS, record_planted

from neuron2graph.cli import app
from neuron2graph.explain.examples import ExampleConfig

runner = CliRunner()
EXAMPLES = ExampleConfig(ctx_len=8, n_train=8, n_test=8, n_negative=8, n_hard=6)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return record_planted(tmp_path_factory.mktemp("explainstages"), steerable=True)


def _cli(*args: str, code: int = 0) -> dict:
    quiet = ["--quiet"] if args[0] in ("explain", "score") else []
    res = runner.invoke(app, [*args, "--json", *quiet])
    assert res.exit_code == code, res.output
    return json.loads(res.stdout) if code == 0 else {"output": res.output}


def _manifest(run: Path, name: str) -> dict:
    return json.loads((run / "stages" / f"{name}.json").read_text())


def test_resume_refuse_overwrite_and_status(planted: tuple[Path, Path]) -> None:
    run, _ = planted
    doc = _cli("explain", str(run), "--neurons", "1:0", "--explainer", "tokens", *EXAMPLE_OPTS)
    assert (doc["explained"], doc["reused"]) == (1, 0)
    doc = _cli("explain", str(run), "--neurons", "1:0,1:1", "--explainer", "tokens",
               *EXAMPLE_OPTS)  # more units later is a resume, not a change
    assert (doc["explained"], doc["reused"]) == (1, 1)
    manifest = _manifest(run, "explain-tokens")
    assert manifest["status"] == "complete" and manifest["done"] == {"1": "0-1"}
    assert manifest["config"]["examples"]["ctx_len"] == 8
    assert "model" not in manifest["config"]  # unused by the tokens explainer: not hashed

    res = runner.invoke(app, ["explain", str(run), "--neurons", "1:0", "--explainer", "tokens",
                              *EXAMPLE_OPTS[:-2], "--n-hard", "5", "--quiet"])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
    assert "examples.n_hard: 6 -> 5" in res.output and "--overwrite" in res.output

    doc = _cli("score", str(run), "--neurons", "1:0,1:1", "--judge", "none", "--no-graph",
               "--scorers", "detection", *EXAMPLE_OPTS)
    assert doc["computed"] == 2 and not doc["layers"]["1"]["sentence:tokens"]  # no judge
    again = _cli("score", str(run), "--neurons", "1:0,1:1", "--judge", "none", "--no-graph",
                 "--scorers", "detection", *EXAMPLE_OPTS)
    assert (again["computed"], again["reused"]) == (0, 2)
    refused = _cli("score", str(run), "--neurons", "1:0", "--judge", "none", "--no-graph",
                   "--scorers", "detection,embedding", *EXAMPLE_OPTS, code=2)["output"]
    assert "scorers: ['detection'] -> ['detection', 'embedding']" in refused
    # a new explanation makes the unit's scores stale: only that unit is scored again
    _cli("explain", str(run), "--neurons", "1:0", "--explainer", "graph", "--augmenter", "none",
         *EXAMPLE_OPTS)
    doc = _cli("score", str(run), "--neurons", "1:0,1:1", "--judge", "none", "--no-graph",
               "--scorers", "detection", *EXAMPLE_OPTS)
    assert (doc["computed"], doc["reused"]) == (1, 1)
    with sqlite3.connect(run / "index.sqlite") as conn:
        n_rows = conn.execute("SELECT COUNT(*) FROM explanation_scores").fetchone()[0]
    assert n_rows > 0
    with sqlite3.connect(run / "index.sqlite") as conn:
        conn.execute("DELETE FROM explanation_scores")
    tables = _cli("reindex", str(run))["tables"]
    assert tables["explanation_scores"] == 2
    with sqlite3.connect(run / "index.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM explanation_scores").fetchone()[0] == n_rows

    status = _cli("status", str(run))
    assert status["stages"]["explain-tokens"]["layers"]["1"]["done"] == 2
    assert status["stages"]["score"]["layers"]["1"]["done"] == 2

    doc = _cli("explain", str(run), "--neurons", "1:0", "--explainer", "tokens", *EXAMPLE_OPTS,
               "--overwrite")
    assert (doc["explained"], doc["reused"]) == (1, 0)
    assert _manifest(run, "explain-tokens")["done"] == {"1": "0"}  # redone from nothing
    assert not (run / "explain/explanations/tokens/1_1.json").exists()

    # other example settings with --overwrite: the whole explain folder starts afresh
    doc = _cli("explain", str(run), "--neurons", "1:0", "--explainer", "tokens",
               *EXAMPLE_OPTS[:-2], "--n-hard", "5", "--overwrite")
    assert doc["explained"] == 1
    assert sorted(p.stem for p in (run / "stages").glob("explain-*.json")) == ["explain-tokens"]
    assert not (run / "stages" / "score.json").exists()
    assert not (run / "explain" / "explanations" / "graph").exists()


def test_migration_of_a_run_made_before_manifests(planted: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    import shutil

    src, _ = planted
    run = tmp_path / "old"
    shutil.copytree(src, run)
    shutil.rmtree(run / "explain", ignore_errors=True)
    for path in (run / "stages").glob("*.json"):
        if path.stem.startswith("explain-") or path.stem == "score":
            path.unlink()
    units = "1:0,1:1"
    _cli("explain", str(run), "--neurons", units, "--explainer", "tokens", *EXAMPLE_OPTS)
    _cli("explain", str(run), "--neurons", units, "--explainer", "graph", "--augmenter", "none",
         *EXAMPLE_OPTS)
    _cli("score", str(run), "--neurons", units, "--judge", "none", "--no-graph", "--scorers",
         "detection", *EXAMPLE_OPTS)
    texts = {p.name: p.read_text() for p in (run / "explain").rglob("*.json")}
    for path in (run / "stages").glob("*.json"):  # what a run of the previous version held
        if path.stem.startswith("explain-") or path.stem == "score":
            path.unlink()
    (run / "explain" / "settings.json").write_text(json.dumps(asdict(EXAMPLES)))

    res = runner.invoke(app, ["explain", str(run), "--neurons", units, "--explainer", "tokens",
                              *EXAMPLE_OPTS, "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["reused"] == 2 and json.loads(res.stdout)["explained"] == 0
    assert "migrated explain/explanations/tokens: 2 units kept" in res.stderr
    assert (run / "explain" / "settings.json").is_file()  # graph and scores not adopted yet
    doc = _cli("score", str(run), "--neurons", units, "--judge", "none", "--no-graph",
               "--scorers", "detection", *EXAMPLE_OPTS)
    assert (doc["computed"], doc["reused"]) == (0, 2)  # same signature: adopted, not redone
    doc = _cli("explain", str(run), "--neurons", units, "--explainer", "graph", "--augmenter",
               "none", *EXAMPLE_OPTS)
    assert doc["reused"] == 2
    assert not (run / "explain" / "settings.json").exists()  # everything adopted
    assert {p.name: p.read_text() for p in (run / "explain").rglob("*.json")
            if p.name in texts} == texts  # nothing recomputed, nothing lost


def test_intervention_recovers_what_the_units_do(planted: tuple[Path, Path]) -> None:
    from neuron2graph.explain.pipeline import Graphs, load_examples
    from neuron2graph.explain.scorers.intervention import InterventionScorer
    from neuron2graph.ids import NeuronId
    from neuron2graph.store.run import Run

    run_dir, _ = planted
    run = Run.open(run_dir)
    lm, source = Graphs(run, device="cpu").loaded()
    scorer = InterventionScorer(lm, source, strength=4.0)
    cat = load_examples(run, NeuronId(1, 0), EXAMPLES, save=False)
    own, other = scorer.score(cat, "`cat`"), scorer.score(cat, "`except`")
    assert own["auroc"] == 1.0 and own["shift"] > 0 and "cat" in own["promoted"][0]
    assert other["auroc"] < 0.5 and other["shift"] < 0
    assert own["kl"] > 0.1 and own["n"] > 0 and own["failed"] == 0
    pair = load_examples(run, NeuronId(1, 1), EXAMPLES, save=False)
    assert scorer.score(pair, "`except`")["auroc"] == 1.0
    # every other token drops by about the same amount, so the rank of `cat` among them is
    # noise on this tiny model; its shift against the vocabulary mean is not
    assert scorer.score(pair, "`cat`")["shift"] < 0 < scorer.score(pair, "`except`")["shift"]
    unknown = scorer.score(pair, "zebras")  # no token in the studied vocabulary: counted
    assert unknown["auroc"] is None and unknown["failed"] == 1

    _cli("explain", str(run_dir), "--neurons", "1:0,1:1", "--explainer", "tokens",
         *EXAMPLE_OPTS, "--overwrite")
    doc = _cli("score", str(run_dir), "--neurons", "1:0,1:1", "--scorers", "intervention",
               "--judge", "none", "--no-graph", "--intervention-strength", "4", *EXAMPLE_OPTS,
               "--overwrite")
    assert doc["failed_calls"] == {}
    rows = {u: json.loads((run_dir / f"explain/scores/1_{u}.json").read_text()) for u in (0, 1)}
    for u, word in ((0, "cat"), (1, "except")):
        entry = rows[u]["methods"]["sentence:tokens"]
        assert word in entry["text"]
        # its own word tops the vocabulary; the explanation's other words ("on", "the") rank
        # anywhere, so the AUROC is at least 1/3 and the shift clearly positive
        assert entry["intervention"]["auroc"] >= 1 / 3 and entry["intervention"]["shift"] > 5
    cell = doc["layers"]["1"]["sentence:tokens"]["intervention.auroc"]
    assert cell["n"] == 2
    assert "intervention.auroc" in (run_dir / "explain" / "table.md").read_text()


def test_report_shows_the_explanation_table(planted: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir, _ = planted
    _cli("explain", str(run_dir), "--neurons", "1:0,1:1", "--explainer", "tokens",
         *EXAMPLE_OPTS, "--overwrite")
    _cli("score", str(run_dir), "--neurons", "1:0,1:1", "--scorers", "intervention",
         "--judge", "none", "--no-graph", *EXAMPLE_OPTS, "--overwrite")
    res = runner.invoke(app, ["report", str(run_dir)])  # no eval in this run: explain only
    assert res.exit_code == 0, res.output
    assert "## Explanations and scores" in res.output and "| tokens | 1 | ok 2 |" in res.output
    assert "| sentence:tokens |" in res.output and "Layer 1" in res.output
    doc = _cli("report", str(run_dir))["explain"]
    assert doc["scored_units"] == 2 and doc["explainers"] == {"tokens": {"1": {"ok": 2}}}
    cell = doc["layers"]["1"]["sentence:tokens"]["intervention.auroc"]
    assert cell["n"] == 2 and 0 <= cell["mean"] <= 1
    res = runner.invoke(app, ["report", str(run_dir), "--html", str(tmp_path / "site")])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "site" / "index.html").read_text()
    assert 'id="explain-table"' in html and "sentence:tokens" in html
