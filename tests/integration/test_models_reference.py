"""Captured neurons equal a reference computed by hand from each family's own MLP weights.

For every family we capture the *residual entering the MLP's norm* (a pre-hook on that norm),
then recompute norm -> projection(s) -> non-linearity ourselves from the module's weights and
compare with what `layer_activations` read at the neuron site. Norm and MLP-input weights are
randomised first, so a wrong norm formula, a site on the wrong side of the gate or the wrong
non-linearity cannot pass by accident.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuron2graph.models import LoadedModel, layer_activations
from neuron2graph.testing import FAMILIES, tiny_model


def gelu_tanh(x: Tensor) -> Tensor:
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def gelu_erf(x: Tensor) -> Tensor:
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def layer_norm(x: Tensor, norm: nn.LayerNorm) -> Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def rms_norm(x: Tensor, norm: nn.Module, *, gemma: bool = False) -> Tensor:
    eps = getattr(norm, "variance_epsilon", None) or norm.eps
    scale = (1.0 + norm.weight) if gemma else norm.weight
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * scale


def linear(x: Tensor, module: nn.Module, *, conv1d: bool = False) -> Tensor:
    """y = x W^T + b for nn.Linear; y = x W + b for GPT-2's Conv1D (weight stored [in, out])."""
    weight: Any = module.weight
    y = x @ (weight if conv1d else weight.T)
    bias: Any = getattr(module, "bias", None)
    return y if bias is None else y + bias


def gated(act: Callable[[Tensor], Tensor]) -> Callable[[nn.Module, Tensor], Tensor]:
    def ref(layer: Any, r: Tensor) -> Tensor:
        x = rms_norm(r, layer.post_attention_layernorm, gemma=act is gelu_tanh)
        return act(linear(x, layer.mlp.gate_proj)) * linear(x, layer.mlp.up_proj)

    return ref


def gpt2_ref(layer: Any, r: Tensor) -> Tensor:
    return gelu_tanh(linear(layer_norm(r, layer.ln_2), layer.mlp.c_fc, conv1d=True))


def neox_ref(layer: Any, r: Tensor) -> Tensor:
    return gelu_erf(linear(layer_norm(r, layer.post_attention_layernorm), layer.mlp.dense_h_to_4h))


def opt_ref(layer: Any, r: Tensor) -> Tensor:
    return torch.relu(linear(layer_norm(r, layer.final_layer_norm), layer.fc1))


# family -> (name of the norm before the MLP, expected activation name, hand-written reference)
REFERENCE: dict[str, tuple[str, str, Callable[[Any, Tensor], Tensor]]] = {
    "gpt2": ("ln_2", "gelu_new", gpt2_ref),
    "gpt_neox": ("post_attention_layernorm", "gelu", neox_ref),
    "opt": ("final_layer_norm", "relu", opt_ref),
    "llama": ("post_attention_layernorm", "silu", gated(F.silu)),
    "mistral": ("post_attention_layernorm", "silu", gated(F.silu)),
    "qwen2": ("post_attention_layernorm", "silu", gated(F.silu)),
    "gemma": ("post_attention_layernorm", "gelu_pytorch_tanh", gated(gelu_tanh)),
}


def activation_name(lm: LoadedModel) -> str:
    config = lm.model.config
    for key in ("activation_function", "hidden_activation", "hidden_act"):
        value = getattr(config, key, None)
        if value:
            return str(value)
    raise AssertionError("config names no activation")


MLP_IN = ("c_fc", "dense_h_to_4h", "fc1", "gate_proj", "up_proj")


def randomise_weights(lm: LoadedModel, seed: int) -> None:
    """Random norm weights, and MLP input weights large enough that pre-activations spread over
    about [-5, 5]: at init scale they sit near 0, where e.g. erf- and tanh-GELU agree to 1e-6."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lm.layer_modules:
            for name, module in layer.named_modules():
                is_norm = "norm" in name or name.startswith("ln_")
                if not (is_norm or name.split(".")[-1] in MLP_IN):
                    continue
                for pname, param in module.named_parameters(recurse=False):
                    noise = torch.randn(param.shape, generator=gen) * 0.5
                    param.copy_(noise + (1.0 if is_norm and pname == "weight" else 0.0))


def test_reference_table_covers_every_family() -> None:
    assert set(REFERENCE) == set(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_neurons_match_hand_computed_reference(family: str) -> None:
    lm = tiny_model(family, n_layers=3)
    norm_name, act_name, reference = REFERENCE[family]
    assert activation_name(lm) == act_name, "the hand reference assumes this non-linearity"
    randomise_weights(lm, seed=1)
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(3, len(lm.tokenizer), (2, 9), generator=gen)

    residuals: dict[int, Tensor] = {}
    handles = []
    for index in (0, 1):
        norm = getattr(lm.layer_modules[index], norm_name)

        def capture(_m: Any, args: tuple[Any, ...], index: int = index) -> None:
            residuals[index] = args[0].detach().clone()

        handles.append(norm.register_forward_pre_hook(capture))
    try:
        acts = layer_activations(lm, ids, [1, 0], attention_mask=torch.ones_like(ids))
    finally:
        for handle in handles:
            handle.remove()

    assert set(acts) == {0, 1}
    for index in (0, 1):
        layer = lm.layer_modules[index]
        expected = reference(layer, residuals[index]).reshape(2, 9, -1)
        assert acts[index].shape == (2, 9, lm.n_neurons) == expected.shape
        assert acts[index].abs().max() > 1.0, "tiny activations would prove little"
        torch.testing.assert_close(acts[index], expected, rtol=1e-4, atol=1e-5)
    # Different layers read different neurons (the site is per layer, not always layer 0).
    assert not torch.allclose(acts[0], acts[1])
