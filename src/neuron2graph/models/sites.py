"""Where things are inside each architecture: the ONE architecture registry.

Each family registers how to find its decoder layers and, in a layer, the modules around its MLP:
the module whose *input* is the MLP input (`mlp_entry`), the output projection whose input is the
neurons (`mlp_out`), the module whose *output* is the MLP output (`mlp_exit`), the input (and
gate) projection rows (`read_rows`, for weight decoding), and the final norm. Hook points
(`models/hooks.py`), the MLP-neuron source (`units/neurons.py`) and weight decoding
(`decode/weights.py`) all read these, so adding a family is one `register_architecture(...)`
call, not another branch in an if-chain.

A *neuron* is one coordinate of the input of an MLP's output projection (after the
non-linearity, and after the gate for gated MLPs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from neuron2graph.errors import N2GError

ReadRows = Callable[[nn.Module], tuple[Tensor, Tensor | None]]
"""Given a decoder layer, return (input-projection rows, gate-projection rows or None), each
`[n_neurons, d_model]`."""


@dataclass(frozen=True)
class ArchitectureSites:
    """How to find the hook sites and MLP weights of one architecture family."""

    family: str
    layers: Callable[[nn.Module], Sequence[nn.Module]]
    """Return the decoder layers of the *causal LM* module, in order."""
    mlp_out: Callable[[nn.Module], nn.Module]
    """Return the MLP output projection of one decoder layer; neurons are its input."""
    final_norm: Callable[[nn.Module], nn.Module | None]
    """Return the final norm applied before the unembedding (for weight-based decoding)."""
    mlp_entry: Callable[[nn.Module], nn.Module]
    """Return the module of one decoder layer whose input is the MLP input (after its norm)."""
    mlp_exit: Callable[[nn.Module], nn.Module]
    """Return the module of one decoder layer whose output is the MLP output."""
    read_rows: ReadRows
    """Return the MLP input (and gate) projection rows of one decoder layer."""


_REGISTRY: dict[str, ArchitectureSites] = {}


def register_architecture(model_types: Sequence[str], sites: ArchitectureSites) -> None:
    """Register the sites of the given `config.model_type` values."""
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


def _rows_of(module: nn.Module) -> Tensor:
    """Rows `[n_neurons, d_model]` of an input projection (Linear: [out, in]; Conv1D: [in, out])."""
    weight: Tensor = module.weight  # type: ignore[assignment]
    return weight.detach().T if type(module).__name__ == "Conv1D" else weight.detach()


def linear_rows(up: str, gate: str | None = None) -> ReadRows:
    """Read rows of separate up (and gate) projections at these attribute paths."""
    get_up, get_gate = _attr(up), None if gate is None else _attr(gate)

    def rows(layer: nn.Module) -> tuple[Tensor, Tensor | None]:
        return _rows_of(get_up(layer)), None if get_gate is None else _rows_of(get_gate(layer))

    return rows


def fused_gate_up(path: str) -> ReadRows:
    """Phi-3 fuses gate and up into one Linear; its forward chunks the output: gate first."""
    get = _attr(path)

    def rows(layer: nn.Module) -> tuple[Tensor, Tensor | None]:
        gate, up = _rows_of(get(layer)).chunk(2, dim=0)
        return up, gate

    return rows


register_architecture(
    ["gpt2"],
    ArchitectureSites(
        family="GPT-2",
        layers=_layers("transformer.h"),
        mlp_out=_attr("mlp.c_proj"),
        final_norm=_attr("transformer.ln_f"),
        mlp_entry=_attr("mlp"),
        mlp_exit=_attr("mlp"),
        read_rows=linear_rows("mlp.c_fc"),
    ),
)
register_architecture(
    ["gpt_neox"],
    ArchitectureSites(
        family="GPT-NeoX / Pythia",
        layers=_layers("gpt_neox.layers"),
        mlp_out=_attr("mlp.dense_4h_to_h"),
        final_norm=_attr("gpt_neox.final_layer_norm"),
        mlp_entry=_attr("mlp"),
        mlp_exit=_attr("mlp"),
        read_rows=linear_rows("mlp.dense_h_to_4h"),
    ),
)


def _llama_like(read_rows: ReadRows) -> ArchitectureSites:
    return ArchitectureSites(
        family="Llama family (gated MLP)",
        layers=_layers("model.layers"),
        mlp_out=_attr("mlp.down_proj"),
        final_norm=_attr("model.norm"),
        mlp_entry=_attr("mlp"),
        mlp_exit=_attr("mlp"),
        read_rows=read_rows,
    )


register_architecture(
    ["llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "olmo", "olmo2"],
    _llama_like(linear_rows("mlp.up_proj", "mlp.gate_proj")),
)
register_architecture(["phi3"], _llama_like(fused_gate_up("mlp.gate_up_proj")))
register_architecture(
    ["opt"],
    ArchitectureSites(
        family="OPT",
        layers=_layers("model.decoder.layers"),
        mlp_out=_attr("fc2"),
        final_norm=lambda m: getattr(m.model.decoder,  # type: ignore[union-attr]
                                     "final_layer_norm", None),
        mlp_entry=_attr("fc1"),  # OPT has no MLP module: fc1's input is the MLP input
        mlp_exit=_attr("fc2"),
        read_rows=linear_rows("fc1"),
    ),
)
