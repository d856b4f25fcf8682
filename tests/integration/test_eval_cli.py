"""`n2g record` then `n2g eval` through the CLI on the planted tiny Llama saved to a folder.

Covers what only the command shows: the run's own model is reloaded, exclusions are listed,
results/table/plot/SQLite rows are written, a killed evaluation resumes (only the missing neuron
is redone) and other settings refuse to mix with earlier results.
"""

from __future__ import annotations

import json
import random
import sqlite3
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from n2g_planted import LAYER, PAIR, SINGLE, A, B, C, save_planted

from neuron2graph.cli import app
from neuron2graph.evaluate.protocol import layer_order
from neuron2graph.testing import WORDS

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("evalcli")
    model_dir = save_planted(root)
    rng = random.Random(0)
    filler = [w for w in WORDS if w not in (A, B, C)]
    words = []
    for _ in range(400):
        chunk = [rng.choice(filler) for _ in range(8)]
        roll = rng.random()
        if roll < 0.3:
            chunk[rng.randrange(8)] = C
        elif roll < 0.6:
            i = rng.randrange(4, 8)
            chunk[i], chunk[i - rng.randrange(1, 4)] = B, A
        elif roll < 0.8:
            chunk[rng.randrange(8)] = B  # a lone B: the pair neuron must stay quiet
        words += chunk
    corpus = root / "corpus.txt"
    corpus.write_text(" ".join(words) + "\n", encoding="utf-8")
    out = root / "run"
    res = runner.invoke(app, [
        "record", "--model", str(model_dir), "--corpus", str(corpus), "--out", str(out),
        "--layers", str(LAYER), "--window", "16", "--sample", "24", "--max-tokens", "0",
        "--no-progress", "--device", "cpu",
    ])
    assert res.exit_code == 0, res.output
    return out


def _eval(run: Path, *extra: str) -> tuple[int, str]:
    res = runner.invoke(app, ["eval", str(run), "--layers", str(LAYER), "--per-layer", "2",
                              "--device", "cpu", *extra])
    return res.exit_code, res.output


def test_eval_cli_end_to_end_and_resume(run_dir: Path) -> None:
    code, out = _eval(run_dir, "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert "neurons" not in doc  # --json prints the aggregate part only
    layer = doc["aggregate"]["layers"][str(LAYER)]
    assert layer["n_neurons"] == 2
    # The other 6 neurons of the planted layer are all-zero: those drawn before the second alive
    # one (in the seeded order) are rejected and listed.
    order = layer_order(8, LAYER, 0)
    drawn = order[: max(order.index(SINGLE), order.index(PAIR)) + 1]
    assert [e["neuron"] for e in doc["excluded"]] == [
        f"{LAYER}:{n}" for n in drawn if n not in (SINGLE, PAIR)
    ]
    assert layer["n_excluded"] == len(drawn) - 2 and layer["shortfall"] == 0
    assert all("never fires" in e["reason"] for e in doc["excluded"])
    n2g = layer["methods"]["n2g"]
    # Exact on the single-token neuron; on the pair neuron the graph never fires wrongly, but may
    # miss an A-B distance that no train example showed.
    assert n2g["precision_firing"]["mean"] == 1.0 and n2g["precision_firing"]["n_undefined"] == 0
    assert n2g["f1_firing"]["mean"] > 0.85
    assert layer["methods"]["token"]["precision_firing"]["mean"] < 1.0  # lone Bs fool it
    assert doc["timings"]["neurons_computed"] == 2
    ev = run_dir / "eval"
    assert (ev / "table.md").is_file() and (ev / "f1_by_layer.png").is_file()
    for method in ("n2g", "official"):
        assert len(list((ev / "graphs" / method / str(LAYER)).glob("*.json"))) == 2
    assert not (run_dir / "graphs").exists()
    con = sqlite3.connect(run_dir / "index.sqlite")
    rows = con.execute("SELECT neuron, f1_firing, precision_firing FROM eval ORDER BY neuron")
    got = {r[0]: r[1:] for r in rows.fetchall()}
    con.close()
    assert set(got) == {SINGLE, PAIR}
    assert got[SINGLE] == (1.0, 1.0) and got[PAIR][1] == 1.0

    # Killed after one neuron: only the missing one is evaluated again, with the same result.
    before = json.loads((ev / "neurons" / f"{LAYER}_{PAIR}.json").read_text())
    (ev / "neurons" / f"{LAYER}_{PAIR}.json").unlink()
    code, out = _eval(run_dir)
    assert code == 0, out
    assert "1 evaluated now, 1 reused" in out and "| Layer | Neurons |" in out
    after = json.loads((ev / "neurons" / f"{LAYER}_{PAIR}.json").read_text())
    assert after["test_windows"] == before["test_windows"]
    assert after["methods"]["n2g"]["f1_firing"] == before["methods"]["n2g"]["f1_firing"]

    # Other settings: one line, exit 2, nothing mixed; --overwrite starts afresh.
    code, out = _eval(run_dir, "--seed", "1", "--no-official")
    assert code == 2 and "another config" in out and "seed: 0 -> 1" in out
    assert "Traceback" not in out
    code, out = _eval(run_dir, "--seed", "1", "--no-official", "--overwrite", "--json")
    assert code == 0, out
    assert "official" not in json.loads(out)["aggregate"]["all"]["methods"]


def test_eval_cli_errors(run_dir: Path) -> None:
    code, out = _eval(run_dir, "--n-train", "20")
    assert code == 2 and "--n-train" in out
    res = runner.invoke(app, ["eval", str(run_dir), "--layers", "0"])
    assert res.exit_code == 2 and "not recorded" in res.output
    res = runner.invoke(app, ["eval", str(run_dir.parent / "nope")])
    assert res.exit_code == 2 and "error:" in res.output
