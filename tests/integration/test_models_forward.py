"""The truncated forward: stops early, ignores right padding, selects neurons, rejects bad input."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from neuron2graph.errors import N2GError
from neuron2graph.models import (
    LoadedModel,
    layer_activations,
    neuron_activations,
    pad_batch,
    supported_model_types,
    wrap_model,
)
from neuron2graph.testing import FAMILIES, tiny_model, tiny_tokenizer

_CACHE: dict[str, LoadedModel] = {}


def model(family: str) -> LoadedModel:
    if family not in _CACHE:
        _CACHE[family] = tiny_model(family, n_layers=3)
    return _CACHE[family]


def random_ids(lm: LoadedModel, shape: tuple[int, int], seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, len(lm.tokenizer), shape, generator=gen)


@pytest.mark.parametrize("family", FAMILIES)
def test_truncated_forward_skips_later_layers_and_head(family: str) -> None:
    lm = model(family)
    calls: list[str] = []
    last = lm.layer_modules[-1].register_forward_hook(lambda *_: calls.append("last"))
    head_module: Any = lm.model.get_output_embeddings()
    head = head_module.register_forward_hook(lambda *_: calls.append("head"))
    ids = random_ids(lm, (1, 6))
    try:
        layer_activations(lm, ids, [0])
        assert calls == []
        layer_activations(lm, ids, [1])
        assert calls == []
        lm.model(input_ids=ids)  # control: a full forward does reach both hooks
        assert calls == ["last", "head"]
    finally:
        last.remove()
        head.remove()


@pytest.mark.parametrize("family", FAMILIES)
def test_right_padding_leaves_real_tokens_unchanged(family: str) -> None:
    lm = model(family)
    seqs = [random_ids(lm, (1, n), seed=n)[0].tolist() for n in (7, 3, 5)]
    ids, mask = pad_batch(seqs, pad_id=0)
    batched = layer_activations(lm, ids, [0, 2], attention_mask=mask)
    for row, seq in enumerate(seqs):
        alone = layer_activations(lm, torch.tensor([seq]), [0, 2])
        for layer in (0, 2):
            torch.testing.assert_close(batched[layer][row, : len(seq)], alone[layer][0],
                                       rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "opt", "llama"])
def test_neuron_subset_selects_columns(family: str) -> None:
    lm = model(family)
    ids = random_ids(lm, (2, 5))
    full = layer_activations(lm, ids, [0, 1])
    index = torch.tensor([5, 0, 63, 5])
    sub = layer_activations(lm, ids, [0, 1], neurons={1: index})
    torch.testing.assert_close(sub[1], full[1][..., index])
    torch.testing.assert_close(sub[0], full[0])  # layers without a subset stay whole
    assert sub[1].shape == (2, 5, 4)


def test_neuron_activations_matches_layer_activations() -> None:
    lm = model("llama")
    seqs = [random_ids(lm, (1, n), seed=n)[0].tolist() for n in (4, 9, 2)]
    out = neuron_activations(lm, seqs, 2, [3, 7], batch_size=2)
    for seq, acts in zip(seqs, out, strict=True):
        ref = layer_activations(lm, torch.tensor([seq]), [2])[2][0][:, [3, 7]]
        torch.testing.assert_close(acts, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layer", [3, -1, 100])
def test_layer_out_of_range(layer: int) -> None:
    lm = model("llama")
    with pytest.raises(N2GError, match=r"layer .* is out of range: .* has layers 0\.\.2"):
        layer_activations(lm, random_ids(lm, (1, 4)), [0, layer])


@pytest.mark.parametrize("neuron", [64, -1])
def test_neuron_out_of_range(neuron: int) -> None:
    lm = model("gpt2")
    assert lm.n_neurons == 64
    with pytest.raises(N2GError, match=r"out of range: .* neurons 0\.\.63"):
        lm.check_neuron(1, neuron)
    with pytest.raises(N2GError, match=r"out of range: .* neurons 0\.\.63"):
        neuron_activations(lm, [[3, 4, 5]], 1, [0, neuron])


def test_unsupported_architecture_names_supported_ones() -> None:
    from transformers import BertConfig, BertForMaskedLM

    bert = BertForMaskedLM(BertConfig(vocab_size=len(tiny_tokenizer()), hidden_size=32,
                                      num_hidden_layers=1, num_attention_heads=4,
                                      intermediate_size=64))
    with pytest.raises(N2GError) as info:
        wrap_model(bert, tiny_tokenizer())
    message = str(info.value)
    assert "unsupported architecture 'bert'" in message
    for model_type in ("gpt2", "gpt_neox", "llama", "opt", "qwen2", "gemma", "mistral"):
        assert model_type in message
    assert "\n" not in message


def test_model_without_config_is_unsupported() -> None:
    class Fake(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = type("Config", (), {"model_type": "mamba"})()
            self.linear = nn.Linear(2, 2)

    with pytest.raises(N2GError, match="unsupported architecture 'mamba'"):
        wrap_model(Fake(), None)
    assert "llama" in supported_model_types()
