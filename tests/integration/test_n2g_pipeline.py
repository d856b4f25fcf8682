"""Pipeline edge cases and batching on tiny models."""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from n2g_planted import LAYER, PAIR, SINGLE, A, B, C, planted_llama

from neuron2graph.models import neuron_activations
from neuron2graph.n2g.pipeline import N2GConfig, NeuronRequest, build_graphs
from neuron2graph.n2g.saliency import SaliencyConfig
from neuron2graph.testing import tiny_model

PAIR_TEXTS = [["the", A, "dog", B, "sat"], [A, B, "the"], ["red", A, "x", "y", B]]


def _request(lm, neuron: int, texts: list[list[str]], **kw) -> NeuronRequest:  # type: ignore[no-untyped-def]
    ids = [lm.tokenizer.convert_tokens_to_ids(t) for t in texts]
    acts = neuron_activations(lm, ids, LAYER, [neuron])
    return NeuronRequest(LAYER, neuron, ids, max(float(a.max()) for a in acts), **kw)


def _paths(graph) -> set[tuple]:  # type: ignore[no-untyped-def]
    out = set()

    def walk(node, path):  # type: ignore[no-untyped-def]
        path = (*path, node.token)
        if node.is_end:
            out.add(path)
        for child in node.children.values():
            walk(child, path)

    for top in graph.root.children.values():
        walk(top, ())
    return out


def test_never_firing_and_nan_neurons_are_flagged_not_fatal() -> None:
    lm = planted_llama()
    good = _request(lm, PAIR, PAIR_TEXTS)
    dead = replace(good, neuron=5, a_max=0.0)
    nan_max = replace(good, neuron=6, a_max=math.nan)
    nan_acts = replace(good, neuron=7, acts=[[math.nan] * len(e) for e in good.examples])
    res = build_graphs(lm, [good, dead, nan_max, nan_acts], N2GConfig(augmenter=None))
    assert _paths(res[0].graph) == {(B, A), (B, None, A), (B, None, None, A)}
    assert res[1].graph.is_empty() and res[1].stats.flags[0].startswith("never_fires")
    assert res[2].graph.is_empty() and res[2].stats.flags[0].startswith("nan_activation")
    assert res[3].graph.is_empty() and "NaN" in res[3].stats.flags[0]


def test_nan_from_the_model_is_flagged() -> None:
    lm = tiny_model("llama", n_layers=2)
    with torch.no_grad():
        lm.model.model.layers[1].mlp.gate_proj.weight[3] = math.nan
    ids = [lm.tokenizer.convert_tokens_to_ids(["the", "cat", "sat"])]
    res = build_graphs(lm, [NeuronRequest(1, 3, ids, 1.0), NeuronRequest(1, 4, ids, 0.01)])
    assert res[0].graph.is_empty() and "NaN" in res[0].stats.flags[0]
    assert res[1].stats.flags == []  # the other neuron of the batch is unaffected


def test_empty_augmentation_and_mask_strategies_agree() -> None:
    lm = planted_llama()
    req = _request(lm, PAIR, PAIR_TEXTS)
    base = build_graphs(lm, [req], N2GConfig(augmenter=None))[0]
    assert base.stats.augmented_prompts == 0
    for mask in ("unk", "delete", "id:5", "mean_embedding"):
        cfg = N2GConfig(augmenter=None, saliency=SaliencyConfig(mask=mask))
        assert _paths(build_graphs(lm, [req], cfg)[0].graph) == _paths(base.graph)
    aug = build_graphs(lm, [req], N2GConfig())[0]
    assert aug.stats.augmented_prompts > 0 and _paths(aug.graph) == _paths(base.graph)


def test_truncated_forwards_and_shared_batches() -> None:
    lm = planted_llama()
    pair = _request(lm, PAIR, PAIR_TEXTS)
    single = _request(lm, SINGLE, [["the", C, "sat"], [C], [C, "dog", "the"]])
    cfg = N2GConfig(augmenter=None)
    alone = [build_graphs(lm, [r], cfg)[0] for r in (pair, single)]
    together = build_graphs(lm, [pair, single], cfg)
    for a, t in zip(alone, together, strict=True):
        assert _paths(a.graph) == _paths(t.graph)
        # every forward stops after layer LAYER: token-layers are tokens x (LAYER + 1)
        assert a.stats.token_layers > 0
    assert sum(t.stats.token_layers for t in together) <= sum(a.stats.token_layers for a in alone)
    one = alone[1].stats
    assert one.token_layers % (LAYER + 1) == 0


def test_bos_is_kept_and_never_a_node() -> None:
    lm = planted_llama()
    bos = lm.tokenizer.bos_token_id
    texts = [["<bos>", *t] for t in PAIR_TEXTS]
    req = _request(lm, PAIR, texts)
    assert all(ex[0] == bos for ex in req.examples)
    res = build_graphs(lm, [req], N2GConfig(augmenter=None))[0]
    assert _paths(res.graph) == {(B, A), (B, None, A), (B, None, None, A)}
    assert "<bos>" not in res.graph.context_tokens()
