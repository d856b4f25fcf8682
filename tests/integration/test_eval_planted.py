"""The evaluation protocol end to end with the real N2G builder on a planted tiny Llama.

Neuron PAIR fires on B only when an A is 1-3 tokens before it. Every top example holds such a
pair *and* a lone B far from any A, so a context-free explanation (token lookup) fires twice as
often as the neuron, while a correct graph (A ... B) is exact. The protocol must show exactly that,
on held-out examples and on ordinary text.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from n2g_planted import LAYER, PAIR, SINGLE, A, B, C, planted_llama

from neuron2graph.evaluate.builder import model_builder, n2g_config
from neuron2graph.evaluate.protocol import EvalConfig, run_protocol, select_neurons
from neuron2graph.evaluate.report import build_results, markdown_table
from neuron2graph.ids import NeuronId
from neuron2graph.models import neuron_activations
from neuron2graph.store.run import Example
from neuron2graph.testing import WORDS
from neuron2graph.tokens import token_pieces

FILLER = [w for w in WORDS if w not in (A, B, C)]




@dataclass
class PlantedRun:
    """A run-like view of windows whose activations come from the planted model."""

    path: Path
    lm: Any
    top: dict[int, list[Example]] = field(default_factory=dict)
    sample: dict[int, list[Example]] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=lambda: {"model": "planted-llama"})
    layers: list[int] = field(default_factory=lambda: [LAYER])
    n_neurons: int = 8

    def windows(self, neuron: int, texts: list[list[str]], first: int) -> list[Example]:
        enc = self.lm.tokenizer.convert_tokens_to_ids
        ids = [[1, *enc(t)] for t in texts]  # BOS first, like recorded corpus windows
        acts = neuron_activations(self.lm, ids, LAYER, [neuron])
        out = []
        for i, (tok, a) in enumerate(zip(ids, acts, strict=True)):
            row = a[:, 0].tolist()
            out.append(Example(first + i, tok, token_pieces(self.lm.tokenizer, tok), row, max(row)))
        return out

    def a_max(self, nid: Any) -> float:
        exs = self.top.get(nid.neuron, []) + self.sample.get(nid.neuron, [])
        return max((e.max_act for e in exs), default=0.0)

    def top_examples(self, nid: Any, k: int | None = None) -> list[Example]:
        exs = sorted(self.top.get(nid.neuron, []), key=lambda e: -e.max_act)
        return exs[:k] if k is not None else exs

    def sample_examples(self, nid: Any) -> list[Example]:
        return self.sample.get(nid.neuron, [])

    def db(self) -> Any:
        import sqlite3

        return sqlite3.connect(self.path / "index.sqlite")


def _text(rng: random.Random, n: int, plants: dict[int, str]) -> list[str]:
    words = [rng.choice(FILLER) for _ in range(n)]
    for pos, w in plants.items():
        words[pos] = w
    return words


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[PlantedRun, Any, Any]:
    lm = planted_llama()
    path = tmp_path_factory.mktemp("run")
    run = PlantedRun(path, lm)
    rng = random.Random(0)
    pair = [_text(rng, 18, {2: A, 2 + 1 + i % 3: B, 14: B}) for i in range(20)]
    single = [_text(rng, 12, {rng.randrange(1, 12): C}) for _ in range(20)]
    run.top[PAIR] = run.windows(PAIR, pair, 0)
    run.top[SINGLE] = run.windows(SINGLE, single, 100)
    ordinary = [_text(rng, 16, {5: B, 11: A, 13: B, 15: C}) for _ in range(6)]
    # The sample also holds one of PAIR's top windows: it must be left out of false firing.
    run.sample[PAIR] = [*run.windows(PAIR, ordinary, 1000), run.top[PAIR][0]]
    run.sample[SINGLE] = run.windows(SINGLE, ordinary, 1000)
    cfg = EvalConfig(seed=0, build={"model": "planted"})
    sel = select_neurons(run, cfg, neurons=[NeuronId(LAYER, PAIR), NeuronId(LAYER, SINGLE),
                                            NeuronId(LAYER, 5)])
    out = run_protocol(run, sel, cfg, lambda: model_builder(lm, n2g_config(), run),
                       progress=False)
    return run, sel, out


def test_dead_neuron_is_excluded_with_reason(evaluated: tuple) -> None:
    _run, sel, out = evaluated
    assert [e["neuron"] for e in sel.excluded] == [f"{LAYER}:5"]
    assert "never fires" in sel.excluded[0]["reason"]
    assert len(out.rows) == 2


def test_graph_beats_token_lookup_on_a_context_neuron(evaluated: tuple) -> None:
    _run, _sel, out = evaluated
    row = out.rows[0]
    assert row["neuron"] == PAIR and row["test"]["n_firing"] == 10
    n2g, token = row["methods"]["n2g"], row["methods"]["token"]
    assert n2g["f1_firing"] == 1.0 and n2g["precision_firing"] == 1.0
    assert n2g["pearson"] is not None and n2g["pearson"] > 0.9
    # Token lookup fires on every B: all the real firings plus the lone Bs.
    assert token["recall_firing"] == 1.0
    assert token["precision_firing"] == pytest.approx(0.5)
    # Official choices (greedy, folded, every-5th pruning) still capture this simple pattern.
    assert row["methods"]["official"]["recall_firing"] == 1.0
    assert row["methods"]["n2g"]["n_nodes"] > 0 and "build_s" in n2g


def test_false_firing_on_ordinary_text(evaluated: tuple) -> None:
    _run, _sel, out = evaluated
    row = out.rows[0]
    assert row["sample"]["n_windows"] == 6  # the top-example window was removed
    # Ordinary text: B at 5 (no A before), A at 11, B at 13 (fires). Graph: no false firing.
    assert row["methods"]["n2g"]["false_firing"]["n_false_firing"] == 0
    token_ff = row["methods"]["token"]["false_firing"]
    assert token_ff["n_false_firing"] == 6 and token_ff["rate"] > 0
    single = out.rows[1]
    assert single["methods"]["n2g"]["f1_firing"] == 1.0
    assert single["methods"]["n2g"]["false_firing"]["n_false_firing"] == 0


def test_results_and_table(evaluated: tuple) -> None:
    run, sel, out = evaluated
    results = build_results(run, sel, EvalConfig(seed=0), out, {"neurons": ["1:1", "1:0"]})
    agg = results["aggregate"]["layers"][str(LAYER)]["methods"]
    assert agg["n2g"]["f1_firing"]["mean"] == 1.0
    assert agg["token"]["precision_firing"]["mean"] < 1.0
    table = markdown_table(results)
    assert "| 1 | 2 | 1.00 | 1.00 | 1.00 |" in table
