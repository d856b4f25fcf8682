"""Evaluation (paper §4): graphs vs the real neuron on held-out examples, with baselines.

See docs/evaluation.md. Importing this package does not import torch; only the model-backed graph
builder (`neuron2graph.evaluate.builder`) does, when it runs.
"""

from neuron2graph.evaluate.baselines import NgramLookup, TokenLookup
from neuron2graph.evaluate.metrics import (
    Aggregate,
    TokenScores,
    aggregate,
    false_firing,
    pearson,
    score_tokens,
)
from neuron2graph.evaluate.protocol import EvalConfig, run_protocol, select_neurons
from neuron2graph.evaluate.report import load_results, render_table

__all__ = [
    "Aggregate",
    "EvalConfig",
    "NgramLookup",
    "TokenLookup",
    "TokenScores",
    "aggregate",
    "false_firing",
    "load_results",
    "pearson",
    "render_table",
    "run_protocol",
    "score_tokens",
    "select_neurons",
]
