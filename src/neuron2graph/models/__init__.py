"""Models: loading, the architecture registry, named hook points and the truncated forward."""

from neuron2graph.models.default import DEFAULT_ALIAS
from neuron2graph.models.forward import layer_activations, neuron_activations, pad_batch
from neuron2graph.models.hooks import HOOK_POINTS, HookPoint, capture, parse_hook_name
from neuron2graph.models.loading import LoadedModel, load_model, wrap_model
from neuron2graph.models.sites import (
    ArchitectureSites,
    register_architecture,
    sites_for,
    supported_model_types,
)

__all__ = [
    "DEFAULT_ALIAS",
    "HOOK_POINTS",
    "ArchitectureSites",
    "HookPoint",
    "LoadedModel",
    "capture",
    "layer_activations",
    "load_model",
    "neuron_activations",
    "pad_batch",
    "parse_hook_name",
    "register_architecture",
    "sites_for",
    "supported_model_types",
    "wrap_model",
]
