"""The all-activation-levels protocol end to end: planted tiny Llama, real N2G builder.

Neuron PAIR fires on B only when an A is 1-3 tokens before it. Its windows: top windows (A...B
pairs plus a lone B), and a random sample of ordinary text where B appears both after an A and
alone. Every predictor must be scored on the same held-out windows, disjoint from the train
windows; on random text the token lookup fires on every lone B while the graphs do not, and the
improved (calibrated) graph must not lose the neuron's firings.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from n2g_planted import LAYER, PAIR, A, B, planted_llama
from test_eval_planted import PlantedRun, _text

from neuron2graph.evaluate.builder import model_builder, n2g_config
from neuron2graph.evaluate.protocol import EvalConfig, run_protocol, select_neurons
from neuron2graph.evaluate.report import build_results, markdown_table
from neuron2graph.ids import NeuronId


def _levels_run(path: Path) -> tuple[PlantedRun, Any]:
    lm = planted_llama()
    run = PlantedRun(path, lm)
    rng = random.Random(1)
    pair = [_text(rng, 16, {2: A, 2 + 1 + i % 3: B, 13: B}) for i in range(14)]
    run.top[PAIR] = run.windows(PAIR, pair, 0)
    ordinary = [_text(rng, 16, {3: A, 4 + i % 3: B, 12: B} if i % 2 else {6: B})
                for i in range(30)]
    run.sample[PAIR] = run.windows(PAIR, ordinary, 1000)
    return run, lm


@pytest.fixture(scope="module")
def levels(tmp_path_factory: pytest.TempPathFactory) -> tuple[PlantedRun, Any, Any, Any]:
    run, lm = _levels_run(tmp_path_factory.mktemp("levels"))
    rows = {}
    for split in ("test", "val"):
        cfg = EvalConfig(seed=0, k=12, n_train=6, protocol="levels", split=split,
                         official=False, build={"model": "planted"})
        sel = select_neurons(run, cfg, neurons=[NeuronId(LAYER, PAIR)])
        out = run_protocol(run, sel, cfg, lambda: model_builder(lm, n2g_config(augmenter=None),
                                                                run),
                           progress=False, overwrite=True)
        rows[split] = (cfg, sel, out)
    return run, lm, rows["test"], rows["val"]


def test_every_predictor_on_the_same_held_out_windows(levels: tuple) -> None:
    _run, _lm, (_cfg, _sel, out), (_vcfg, _vsel, vout) = levels
    row = out.rows[0]
    assert row["protocol"] == "levels" and set(row["methods"]) == {
        "n2g", "improved", "token", "5gram"}
    assert not set(row["train_windows"]) & set(row["test_windows"])
    # Held-out windows cover the top windows and random text; val is a different set.
    assert any(w < 1000 for w in row["test_windows"])
    assert row["test"]["n_random"] > 0 and row["test"]["n_firing"] > 0
    val = vout.rows[0]
    assert val["split"] == "val" and not set(val["test_windows"]) & set(row["test_windows"])
    for entry in row["methods"].values():
        assert entry["n_tokens"] == row["test"]["n_tokens"]


def test_graphs_beat_token_lookup_on_random_text(levels: tuple) -> None:
    _run, _lm, (_cfg, _sel, out), _val = levels
    m = out.rows[0]["methods"]
    print({k: (v["f1_firing"], v["false_firing"]["n_false_firing"], v["pearson"])
           for k, v in m.items()})
    token, paper, improved = m["token"], m["n2g"], m["improved"]
    assert token["false_firing"]["n_false_firing"] > 0  # every lone B
    assert improved["false_firing"]["n_false_firing"] == 0
    assert paper["false_firing"]["n_false_firing"] == 0
    assert improved["recall_firing"] >= 0.9
    assert improved["f1_firing"] > token["f1_firing"]
    assert improved["pearson"] is not None and improved["pearson"] > token["pearson"]


def test_report_names_the_improved_method(levels: tuple) -> None:
    run, _lm, (cfg, sel, out), _val = levels
    table = markdown_table(build_results(run, sel, cfg, out, {"neurons": [str(PAIR)]}))
    assert "N2G improved" in table and "token lookup" in table
