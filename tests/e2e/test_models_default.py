"""The real default model (SmolLM2-135M, offline alias) and the built-in default corpus."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from neuron2graph.corpus import iter_documents, iter_windows
from neuron2graph.models import DEFAULT_ALIAS, LoadedModel, layer_activations, load_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lm() -> LoadedModel:
    return load_model(DEFAULT_ALIAS, device="cpu")


def test_default_shape(lm: LoadedModel) -> None:
    assert DEFAULT_ALIAS == "smollm2-135m"
    assert lm.n_layers == 30
    assert lm.n_neurons == 1536
    assert lm.model.config.model_type == "llama"
    assert lm.dtype == torch.float32


def test_layer0_matches_manual_computation(lm: LoadedModel) -> None:
    """silu(gate(x)) * up(x) with x = RMSNorm(residual entering layer 0's MLP), from the weights."""
    ids = torch.tensor([lm.tokenizer("All of the cats, except one, sat on the mat.",
                                     add_special_tokens=False)["input_ids"]])
    layer: Any = lm.layer_modules[0]
    captured: dict[str, torch.Tensor] = {}
    handle = layer.post_attention_layernorm.register_forward_pre_hook(
        lambda _m, args: captured.__setitem__("residual", args[0].detach().clone()))
    try:
        acts = layer_activations(lm, ids, [0])[0]
    finally:
        handle.remove()
    r = captured["residual"]
    norm = layer.post_attention_layernorm
    x = r * torch.rsqrt(r.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon) * norm.weight
    expected = F.silu(x @ layer.mlp.gate_proj.weight.T) * (x @ layer.mlp.up_proj.weight.T)
    assert acts.shape == (1, ids.shape[1], 1536)
    torch.testing.assert_close(acts, expected, rtol=1e-4, atol=1e-5)
    assert acts.abs().max() > 0.1


def test_default_corpus_has_a_million_tokens(lm: LoadedModel) -> None:
    """The built-in default holds >= 1M tokens under this tokenizer (total in docs/corpus.md)."""
    total = 0
    sources = set()
    for window in iter_windows(iter_documents("default"), lm.tokenizer, length=64, bos="never"):
        total += len(window.token_ids)
        sources.add(window.doc_id.split("/", 1)[0])
        if total >= 1_000_000:
            break
    assert total >= 1_000_000
    assert sources == {"web", "stdlib"}
