"""Neuron to Graph: prune, saliency, augment, build and predict (paper §3, DESIGN.md §2).

Only the torch-free parts are imported here, so `NeuronGraph.load(path).predict(tokens)` works
without torch; the pipeline lives in `neuron2graph.n2g.pipeline`.
"""

from neuron2graph.n2g.augment import AugmentConfig
from neuron2graph.n2g.build import BuildConfig, Prompt, build_graph
from neuron2graph.n2g.graph import IGNORE, SCHEMA_VERSION, Match, NeuronGraph, Node
from neuron2graph.n2g.prune import PruneConfig, PruneResult, PruneSearch, prune
from neuron2graph.n2g.saliency import Importances, SaliencyConfig, saliency

__all__ = [
    "IGNORE",
    "SCHEMA_VERSION",
    "AugmentConfig",
    "BuildConfig",
    "Importances",
    "Match",
    "NeuronGraph",
    "Node",
    "Prompt",
    "PruneConfig",
    "PruneResult",
    "PruneSearch",
    "SaliencyConfig",
    "build_graph",
    "prune",
    "saliency",
]
