"""Weight-based decoding (Flash Interpretability): neurons read through the LM head.

For every neuron: the tokens its output weights promote and suppress, and the tokens its input
weights read, in seconds for a whole model with bounded memory; `find_neurons` for the neurons
that promote a token; clamping to check a decoding causally; model-to-model comparison.

Imports are lazy so that `neuron2graph.decode.table.decoded_tokens` (used by the browser) never
pulls in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from neuron2graph.decode.clamp import ClampReport, clamp_report, clamped
    from neuron2graph.decode.compare import Comparison, compare_models, plot_comparison
    from neuron2graph.decode.core import (
        KINDS,
        LayerDecode,
        decode_layer,
        decode_model,
        find_neurons,
        neuron_logits,
        single_token_id,
    )
    from neuron2graph.decode.store import (
        load_layer,
        note_in_manifest,
        save_layer,
    )
    from neuron2graph.decode.table import decoded_layers, decoded_tokens
    from neuron2graph.decode.topk import TopK, chunked_topk
    from neuron2graph.decode.weights import FinalNorm, neuron_directions

_WHERE = {
    "ClampReport": "clamp", "clamp_report": "clamp", "clamped": "clamp",
    "Comparison": "compare", "compare_models": "compare", "plot_comparison": "compare",
    "KINDS": "core", "LayerDecode": "core", "decode_layer": "core", "decode_model": "core",
    "find_neurons": "core", "neuron_logits": "core", "single_token_id": "core",
    "load_layer": "store", "note_in_manifest": "store", "save_layer": "store",
    "decoded_layers": "table", "decoded_tokens": "table",
    "TopK": "topk", "chunked_topk": "topk",
    "FinalNorm": "weights", "neuron_directions": "weights",
}

__all__ = [
    "KINDS",
    "ClampReport",
    "Comparison",
    "FinalNorm",
    "LayerDecode",
    "TopK",
    "chunked_topk",
    "clamp_report",
    "clamped",
    "compare_models",
    "decode_layer",
    "decode_model",
    "decoded_layers",
    "decoded_tokens",
    "find_neurons",
    "load_layer",
    "neuron_directions",
    "neuron_logits",
    "note_in_manifest",
    "plot_comparison",
    "save_layer",
    "single_token_id",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"neuron2graph.decode.{_WHERE[name]}"), name)
    raise AttributeError(name)
