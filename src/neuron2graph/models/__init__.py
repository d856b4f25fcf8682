"""Models: loading, neuron sites per architecture, and the truncated forward that reads neurons."""

from neuron2graph.models.default import DEFAULT_ALIAS
from neuron2graph.models.forward import layer_activations, neuron_activations, pad_batch
from neuron2graph.models.loading import LoadedModel, load_model, wrap_model
from neuron2graph.models.sites import (
    ArchitectureSites,
    register_architecture,
    sites_for,
    supported_model_types,
)

__all__ = [
    "DEFAULT_ALIAS",
    "ArchitectureSites",
    "LoadedModel",
    "layer_activations",
    "load_model",
    "neuron_activations",
    "pad_batch",
    "register_architecture",
    "sites_for",
    "supported_model_types",
    "wrap_model",
]
