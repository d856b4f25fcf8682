"""Neuron to Graph: prune, saliency, augment, build and predict (paper §3, DESIGN.md §2)."""

from neuron2graph.n2g.graph import IGNORE, SCHEMA_VERSION, Match, NeuronGraph, Node

__all__ = ["IGNORE", "SCHEMA_VERSION", "Match", "NeuronGraph", "Node"]
