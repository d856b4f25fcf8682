"""Build: turn measured prompts (activations + importance rows) into a neuron's trie (paper §3).

For every token whose normalised activation a/a_max is >= `activation_threshold` an activating
node is
added; walking leftwards, tokens with importance >= `importance_threshold` become context nodes and
the others wildcards; the last important token terminates the path and stores the normalised
activation. Tokens are exact pieces (` The` and `the` stay apart) unless `fold=True`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from neuron2graph.errors import N2GError
from neuron2graph.n2g.graph import NeuronGraph


@dataclass(frozen=True)
class BuildConfig:
    activation_threshold: float = 0.5
    importance_threshold: float = 0.75
    fold: bool = False
    """Fold case and whitespace like the official code (merges ` The` and `the`)."""


@dataclass
class Prompt:
    """One measured prompt: a pruned example or an augmentation of one."""

    tokens: list[str]
    """Token pieces (neuron2graph.tokens.token_pieces)."""
    acts: list[float]
    """Raw activations of the neuron on each token."""
    importances: dict[int, list[float]] = field(default_factory=dict)
    """importances[j][k]: importance of token k for token j, for the firing tokens j."""
    example: int | None = None
    """Id of the source example (kept on the nodes for the browser)."""
    skip_first: bool = False
    """The first token is a BOS kept for the model: never a graph node."""


def add_prompt(graph: NeuronGraph, prompt: Prompt, a_max: float, config: BuildConfig) -> int:
    """Add one path per firing token of `prompt`; returns the number of paths added."""
    if a_max <= 0 or not math.isfinite(a_max):
        return 0
    added = 0
    first = 1 if prompt.skip_first else 0
    for j, act in enumerate(prompt.acts):
        if j < first:
            continue
        if not math.isfinite(act):
            raise N2GError("activation is NaN or inf: check the model weights and dtype (try fp32)")
        norm = act / a_max
        if norm < config.activation_threshold:
            continue
        row = prompt.importances.get(j)
        if row is None:
            raise ValueError(f"no importance row for firing token {j}: compute it before building")
        context: list[tuple[str, float] | None] = []
        for k in range(j - 1, first - 1, -1):
            imp = row[k]
            context.append((prompt.tokens[k], imp) if imp >= config.importance_threshold else None)
        graph.add_path(prompt.tokens[j], norm, context, example=prompt.example)
        added += 1
    return added


def build_graph(
    neuron: str,
    prompts: Sequence[Prompt],
    a_max: float,
    config: BuildConfig | None = None,
) -> NeuronGraph:
    """A graph from measured prompts; `a_max <= 0` (a neuron that never fires): empty graph."""
    cfg = config or BuildConfig()
    graph = NeuronGraph(neuron, fold=cfg.fold)
    for prompt in prompts:
        add_prompt(graph, prompt, a_max, cfg)
    return graph
