"""Where the neurons are, per architecture.

A *neuron* is one coordinate of the input of an MLP's output projection (after the
non-linearity, and after the gate for gated MLPs). Each architecture family registers how to
find its decoder layers and, in a layer, the output projection module; we then read neurons with
a forward pre-hook on that module, which works the same for every family.

Adding a family is one `register_architecture(...)` call, not another branch in an if-chain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from neuron2graph.errors import N2GError


@dataclass(frozen=True)
class ArchitectureSites:
    """How to find the neuron sites of one architecture family."""

    family: str
    layers: Callable[[nn.Module], Sequence[nn.Module]]
    """Return the decoder layers of the *causal LM* module, in order."""
    mlp_out: Callable[[nn.Module], nn.Module]
    """Return the MLP output projection of one decoder layer; neurons are its input."""
    final_norm: Callable[[nn.Module], nn.Module | None]
    """Return the final norm applied before the unembedding (for weight-based decoding)."""


_REGISTRY: dict[str, ArchitectureSites] = {}


def register_architecture(model_types: Sequence[str], sites: ArchitectureSites) -> None:
    """Register neuron sites for the given `config.model_type` values."""
    for model_type in model_types:
        _REGISTRY[model_type] = sites


def supported_model_types() -> list[str]:
    return sorted(_REGISTRY)


def sites_for(model: nn.Module) -> ArchitectureSites:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in _REGISTRY:
        raise N2GError(
            f"unsupported architecture {model_type!r}: neuron2graph supports "
            f"{', '.join(supported_model_types())} (register others with "
            "neuron2graph.models.register_architecture)"
        )
    return _REGISTRY[model_type]


def _attr(path: str) -> Callable[[nn.Module], Any]:
    def get(module: Any) -> Any:
        for name in path.split("."):
            module = getattr(module, name)
        return module

    return get


def _layers(path: str) -> Callable[[nn.Module], Sequence[nn.Module]]:
    get = _attr(path)
    return lambda model: list(get(model))  # type: ignore[arg-type]


register_architecture(
    ["gpt2"],
    ArchitectureSites(
        family="GPT-2",
        layers=_layers("transformer.h"),
        mlp_out=_attr("mlp.c_proj"),
        final_norm=_attr("transformer.ln_f"),
    ),
)
register_architecture(
    ["gpt_neox"],
    ArchitectureSites(
        family="GPT-NeoX / Pythia",
        layers=_layers("gpt_neox.layers"),
        mlp_out=_attr("mlp.dense_4h_to_h"),
        final_norm=_attr("gpt_neox.final_layer_norm"),
    ),
)
register_architecture(
    ["llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "olmo", "olmo2", "phi3"],
    ArchitectureSites(
        family="Llama family (gated MLP)",
        layers=_layers("model.layers"),
        mlp_out=_attr("mlp.down_proj"),
        final_norm=_attr("model.norm"),
    ),
)
register_architecture(
    ["opt"],
    ArchitectureSites(
        family="OPT",
        layers=_layers("model.decoder.layers"),
        mlp_out=_attr("fc2"),
        final_norm=lambda m: getattr(m.model.decoder,  # type: ignore[union-attr]
 "final_layer_norm", None),
    ),
)
