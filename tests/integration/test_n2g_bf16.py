"""N2G in bf16 (CPU bf16 matmul units, or a GPU) must build the graphs fp32 builds.

bf16 is what makes a CPU with AMX or a GPU several times faster (docs/scale.md); it is only worth
having if the graphs stay the same where the behaviour is clear. The planted tiny Llama's two
neurons are built in fp32 and in bf16 on each device present, and the activations the pipeline
reads in bf16 are compared with fp32's. The CUDA case runs only where CUDA is present (skipped,
and reported as skipped, elsewhere).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from n2g_planted import LAYER, PAIR, SINGLE, A, B, C, planted_llama
from test_n2g_planted import _pair_text, _paths, _text

from neuron2graph.models import neuron_activations
from neuron2graph.models.loading import wrap_model
from neuron2graph.n2g.pipeline import N2GConfig, NeuronRequest, build_graphs

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device here"))]


def _requests(lm, texts_by_neuron):  # type: ignore[no-untyped-def]
    enc = lm.tokenizer.convert_tokens_to_ids
    reqs = []
    for neuron, texts in texts_by_neuron:
        ids = [enc(t) for t in texts]
        acts = neuron_activations(lm, ids, LAYER, [neuron])
        reqs.append(NeuronRequest(LAYER, neuron, ids, max(float(a.max()) for a in acts)))
    return reqs


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_builds_the_fp32_graphs(device: str) -> None:
    rng = random.Random(0)
    texts = [(SINGLE, [_text(rng, 16, {rng.randrange(0, 16): C}) for _ in range(8)]),
             (PAIR, [_pair_text(rng, 1 + i % 3) for i in range(9)])]
    fp32 = planted_llama()
    half = planted_llama()
    half = wrap_model(half.model.to(torch.bfloat16), half.tokenizer, spec="planted-bf16",
                      device=device)
    assert half.dtype == torch.bfloat16
    ref = build_graphs(fp32, _requests(fp32, texts), N2GConfig())
    got = build_graphs(half, _requests(half, texts), N2GConfig())
    for r, g in zip(ref, got, strict=True):
        assert sorted(map(str, _paths(g.graph))) == sorted(map(str, _paths(r.graph)))
        assert set(g.graph.activating_tokens) == set(r.graph.activating_tokens)
    assert _paths(got[0].graph) == [[C]]
    assert set(got[1].graph.activating_tokens) == {B}


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_activations_are_close_to_fp32(device: str) -> None:
    rng = random.Random(1)
    ids_text = [_pair_text(rng, d) for d in (1, 2, 3, 5)] + [_text(rng, 20, {4: C, 11: A})]
    fp32 = planted_llama()
    half = planted_llama()
    half = wrap_model(half.model.to(torch.bfloat16), half.tokenizer, device=device)
    enc = fp32.tokenizer.convert_tokens_to_ids
    ids = [enc(t) for t in ids_text]
    for neuron in (SINGLE, PAIR):
        a = torch.cat([x[:, 0] for x in neuron_activations(fp32, ids, LAYER, [neuron])])
        b = torch.cat([x[:, 0].float().cpu()
                       for x in neuron_activations(half, ids, LAYER, [neuron])])
        scale = float(a.abs().max())
        assert scale > 0
        # bf16 keeps 8 bits of mantissa: ~0.4% per rounding; a few roundings deep, 3% of the
        # neuron's maximum is far below the 0.5 firing and 0.75 importance thresholds' margins
        assert float((a - b).abs().max()) <= 0.03 * scale
        assert ((a / scale >= 0.5) == (b / scale >= 0.5)).all()
