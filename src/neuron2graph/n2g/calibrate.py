"""Calibration: the improved method's graph values, measured over every match of a path.

Why: the paper's graph stores, at the end of a path, the activation of the one example the path
was built from, and predicts only when the *whole* path matches. Measured on SmolLM2 (docs/
results.md) that gives two failures at once: paths learned from strong top examples also match
ordinary text where the neuron stays quiet (false firing), and test firings whose full context
was never seen are missed (recall 0.42). Calibration fixes both with data the run already holds,
without running the model:

- every train window (the activating ones *and* quiet random text) is matched against the graph,
  and each node on the chosen path counts how often it was reached, the mean real normalised
  activation there and how many of those positions fired — so a path that matches where the
  neuron does not fire learns a low value (negative examples);
- with `backoff`, a position whose activating token is in the graph but whose full path does not
  match is predicted from the deepest node of its best partial match that was reached at least
  `min_count` times in train (like an n-gram model backing off to a shorter context);
- a node predicts firing when at least `vote` of its train positions fired (chosen per layer on
  validation windows), and otherwise the calibrated mean activation.

The chosen match is structural (it does not depend on the calibrated values), so calibrating and
predicting use the very same node for the same context. Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from neuron2graph.n2g.graph import IGNORE

if TYPE_CHECKING:
    from neuron2graph.n2g.graph import NeuronGraph, Node


@dataclass(frozen=True)
class CalibrateConfig:
    backoff: bool = True
    """Predict partial matches from the deepest calibrated node of the best partial path."""
    min_count: int = 2
    """A node's calibration is used when at least this many train positions reached it."""
    vote: float = 0.5
    """Predict firing when at least this share of the node's train positions fired."""
    threshold: float = 0.5
    """A position fires when a / a_max >= threshold (the protocol's firing threshold)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> CalibrateConfig:
        return cls(**data) if data else cls()


def chosen_path(graph: NeuronGraph, tokens: Sequence[str], position: int,
                *, backoff: bool) -> list[Node] | None:
    """The nodes of the match used at `position`, activating node first.

    Without back-off: the longest complete path (as `NeuronGraph.match`). With back-off: the
    path with the most exact context tokens matched (ties: ending at a termination, then deeper),
    cut after its last exact node (trailing wildcards say nothing).
    """
    key = graph.key
    first = graph.root.children.get(key(tokens[position]))
    if first is None:
        return None
    best: tuple[tuple[int, int, int], list[Node]] | None = None
    stack: list[tuple[Node, int, list[Node], int]] = [(first, position - 1, [first], 1)]
    while stack:
        node, pos, path, exact = stack.pop()
        if backoff:
            if node.token is not None:  # the path ends at an exact node: a candidate
                score = (exact, int(node.end_activation is not None), len(path))
                if best is None or score > best[0]:
                    best = (score, path)
        elif node.end_activation is not None:
            score = (len(path), 0, 0)
            if best is None or score > best[0] or (
                score == best[0] and (node.end_activation or 0) > (best[1][-1].end_activation or 0)
            ):
                best = (score, path)
        if pos < 0 or not node.children:
            continue
        nxt = node.children.get(key(tokens[pos]))
        if nxt is not None:
            stack.append((nxt, pos - 1, [*path, nxt], exact + 1))
        wild = node.children.get(IGNORE)
        if wild is not None:
            stack.append((wild, pos - 1, [*path, wild], exact))
    return None if best is None else best[1]


def reset(graph: NeuronGraph) -> None:
    for node in graph.root.walk():
        node.cal_count, node.cal_sum, node.cal_fire = 0, 0.0, 0


def calibrate(graph: NeuronGraph, windows: Sequence[tuple[Sequence[str], Sequence[float]]],
              config: CalibrateConfig | None = None) -> int:
    """Measure every node on the chosen paths over `windows` (token pieces, normalised acts).

    Returns the number of positions that matched. The config is stored in `graph.meta` so a
    saved graph predicts the same way after loading.
    """
    cfg = config or CalibrateConfig()
    reset(graph)
    roots, key = graph.root.children, graph.key
    matched = 0
    for tokens, acts in windows:
        for i, tok in enumerate(tokens):
            if key(tok) not in roots:
                continue
            path = chosen_path(graph, tokens, i, backoff=cfg.backoff)
            if path is None:
                continue
            matched += 1
            a = float(acts[i])
            fired = int(a >= cfg.threshold)
            for node in path:
                node.cal_count += 1
                node.cal_sum += a
                node.cal_fire += fired
    graph.meta["calibration"] = {**cfg.to_json(), "positions": matched}
    return matched


def node_value(node: Node, cfg: CalibrateConfig) -> float:
    """The calibrated prediction of one node: its mean, pushed across the threshold by the vote."""
    mean = node.cal_sum / node.cal_count
    fires = node.cal_fire / node.cal_count >= cfg.vote
    if fires and mean < cfg.threshold:
        return cfg.threshold
    if not fires and mean >= cfg.threshold:
        return cfg.threshold * 0.999
    return mean


def predict_at(graph: NeuronGraph, tokens: Sequence[str], position: int,
               cfg: CalibrateConfig) -> float:
    path = chosen_path(graph, tokens, position, backoff=cfg.backoff)
    if path is None:
        return 0.0
    nodes = path[::-1] if cfg.backoff else path[-1:]
    for node in nodes:
        if node.cal_count >= cfg.min_count:
            return node_value(node, cfg)
    end = path[-1]  # never calibrated (e.g. an augmented context): the paper's value
    return float(end.end_activation) if end.end_activation is not None else 0.0


def predict_calibrated(graph: NeuronGraph, tokens: Sequence[str],
                       config: CalibrateConfig | None = None) -> list[float]:
    """Calibrated prediction for every token (0.0 where the activating token is not in the graph).

    Uses `config`, else the one stored by `calibrate`."""
    cfg = config or CalibrateConfig.from_json(_stored(graph))
    roots, key = graph.root.children, graph.key
    return [predict_at(graph, tokens, i, cfg) if key(t) in roots else 0.0
            for i, t in enumerate(tokens)]


def _stored(graph: NeuronGraph) -> dict[str, Any] | None:
    data = graph.meta.get("calibration")
    if not isinstance(data, dict):
        return None
    return {k: v for k, v in data.items() if k in CalibrateConfig.__dataclass_fields__}


__all__ = ["CalibrateConfig", "calibrate", "chosen_path", "predict_at", "predict_calibrated"]
