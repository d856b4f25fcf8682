"""neuron2graph: explain transformer neurons (and SAE latents) as graphs to read, run and score.

The top-level namespace is deliberately light: importing it never imports torch, so that
`n2g --help` and the web browser start instantly. Heavy entry points are imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from neuron2graph.errors import N2GError
from neuron2graph.ids import NeuronId

__version__ = "0.1.0"

__all__ = ["N2GError", "NeuronId", "__version__", "load_model"]

if TYPE_CHECKING:
    from neuron2graph.models import load_model


def __getattr__(name: str) -> Any:
    if name == "load_model":
        from neuron2graph.models import load_model

        return load_model
    raise AttributeError(name)
