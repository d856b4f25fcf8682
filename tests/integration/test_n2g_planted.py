"""The pipeline must *recover* planted behaviour: exact graph structure, F1 = 1 on held-out text."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from n2g_planted import LAYER, PAIR, SINGLE, A, B, C, planted_llama

from neuron2graph.models import neuron_activations
from neuron2graph.n2g.graph import IGNORE, NeuronGraph
from neuron2graph.n2g.pipeline import N2GConfig, NeuronRequest, build_graphs
from neuron2graph.testing import WORDS
from neuron2graph.tokens import token_pieces

FILLER = [w for w in WORDS if w not in (A, B, C)]


def _text(rng: random.Random, n: int, plants: dict[int, str]) -> list[str]:
    words = [rng.choice(FILLER) for _ in range(n)]
    for pos, w in plants.items():
        words[pos] = w
    return words


def _pair_text(rng: random.Random, dist: int) -> list[str]:
    b = rng.randrange(4, 14)
    return _text(rng, 18, {b - dist: A, b: B})


@pytest.fixture(scope="module")
def built() -> tuple:
    lm = planted_llama()
    rng = random.Random(0)
    single = [_text(rng, 16, {rng.randrange(0, 16): C}) for _ in range(8)]
    single.append([C, *_text(rng, 6, {})])  # key token at position 0
    single.append([C])  # shorter than the pruning window
    pair = [_pair_text(rng, 1 + i % 3) for i in range(9)]
    enc = lm.tokenizer.convert_tokens_to_ids
    reqs = []
    for neuron, texts in ((SINGLE, single), (PAIR, pair)):
        ids = [enc(t) for t in texts]
        acts = neuron_activations(lm, ids, LAYER, [neuron])
        a_max = max(float(a.max()) for a in acts)
        reqs.append(NeuronRequest(LAYER, neuron, ids, a_max))
    results = build_graphs(lm, reqs, N2GConfig())
    return lm, reqs, results


def _paths(graph: NeuronGraph) -> list[list[str | None]]:
    out: list[list[str | None]] = []

    def walk(node, path):  # type: ignore[no-untyped-def]
        path = [*path, node.token]
        if node.is_end:
            out.append(path)
        for child in node.children.values():
            walk(child, path)

    for top in graph.root.children.values():
        walk(top, [])
    return out


def test_single_token_neuron_graph_is_one_activating_node(built: tuple) -> None:
    _lm, _reqs, results = built
    graph = results[0].graph
    assert set(graph.activating_tokens) == {C}
    assert _paths(graph) == [[C]]
    assert results[0].stats.flags == []


def test_pair_neuron_graph_is_b_after_a_within_three(built: tuple) -> None:
    graph = built[2][1].graph
    assert set(graph.activating_tokens) == {B}
    paths = _paths(graph)
    assert sorted(len(p) for p in paths) == [2, 3, 4]  # A at distance 1, 2 and 3
    for p in paths:
        assert p[0] == B and p[-1] == A and all(t is None for t in p[1:-1])
    assert graph.context_tokens().keys() == {A}
    ignore_nodes = [n for n in graph.root.walk() if n.is_ignore]
    assert ignore_nodes and all(n.token is None for n in ignore_nodes)
    assert IGNORE in graph.root.children[B].children


def _f1(pred: list[bool], real: list[bool]) -> float:
    tp = sum(p and r for p, r in zip(pred, real, strict=True))
    fp = sum(p and not r for p, r in zip(pred, real, strict=True))
    fn = sum(r and not p for p, r in zip(pred, real, strict=True))
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def test_held_out_f1_is_one(built: tuple) -> None:
    lm, reqs, results = built
    rng = random.Random(123)
    texts = [_pair_text(rng, d) for d in (1, 2, 3, 4, 5, 7)]
    texts += [_text(rng, 20, {3: C, 9: A, 15: C}), _text(rng, 20, {2: B, 5: A, 6: C})]
    texts += [_text(rng, 12, {0: A, 1: B, 2: A, 6: B, 10: B}), [B, A, B, C]]
    enc = lm.tokenizer.convert_tokens_to_ids
    for neuron, req, res in zip((SINGLE, PAIR), reqs, results, strict=True):
        preds: list[bool] = []
        reals: list[bool] = []
        for text in texts:
            ids = enc(text)
            real = neuron_activations(lm, [ids], LAYER, [neuron])[0][:, 0].tolist()
            pred = res.graph.predict(token_pieces(lm.tokenizer, ids))
            reals += [a / req.a_max >= 0.5 for a in real]
            preds += [p >= 0.5 for p in pred]
        assert sum(reals) >= 4
        assert _f1(preds, reals) == 1.0


def test_stats_count_truncated_work(built: tuple) -> None:
    lm, _reqs, results = built
    for res in results:
        st = res.stats
        assert st.token_layers > 0 and st.forward_seconds > 0
        assert st.padded_token_layers >= st.token_layers
        assert st.official_token_layers > 0
        assert st.seconds >= st.forward_seconds
    assert lm.n_layers == 2


def test_graph_round_trip_predicts_the_same(built: tuple, tmp_path: Path) -> None:
    lm, _reqs, results = built
    graph = results[1].graph
    graph.save(tmp_path / "g.json")
    loaded = NeuronGraph.load(tmp_path / "g.json")
    tokens = token_pieces(lm.tokenizer, lm.tokenizer.convert_tokens_to_ids([A, "the", B, B]))
    assert loaded.predict(tokens) == graph.predict(tokens)
    assert loaded.predict(tokens)[2] > 0.5
