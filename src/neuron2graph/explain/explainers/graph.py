"""`graph` and `tokens`: explanations written without any LLM.

`graph` reads the unit's N2G graph (built on the train contexts) and writes what it predicts:
"Fires on ` except` after ` all`; on ` cat` in any context." It is the graph turned into a
sentence, so scoring it beside the graph itself measures what is lost in the wording.

`tokens` is the token lookup turned into a sentence: the tokens with the highest activation in
the train contexts ("Fires on the tokens ` cat`, ` dog`."), i.e. the no-context explanation.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from neuron2graph.explain.examples import UnitExamples
from neuron2graph.explain.explainers.base import Explanation, UnitInput, quote


def graph_paths(top: Any) -> Iterator[tuple[list[tuple[int, str | None]], float]]:
    """(path, end activation) for every termination under an activating node; the path lists
    (tokens back from the activating token, context token or None for a wildcard)."""

    def walk(node: Any, path: list[tuple[int, str | None]]) -> Iterator[Any]:
        if node.end_activation is not None:
            yield list(path), float(node.end_activation)
        for child in node.children.values():
            yield from walk(child, [*path, (child.depth - top.depth, child.token)])

    yield from walk(top, [])


def describe_path(path: list[tuple[int, str | None]]) -> str:
    context = [(back, tok) for back, tok in path if tok is not None]
    if not context:
        return "in any context"
    parts = [quote(tok) if back == 1 else f"{quote(tok)} {back} tokens back"
             for back, tok in context]
    return "after " + " and ".join(parts)


def graph_sentence(graph: Any, *, max_tokens: int = 3, max_paths: int = 2) -> str | None:
    """The graph as one sentence (None for an empty graph)."""
    tops = sorted(graph.root.children.values(), key=lambda n: (-n.activation, n.token or ""))
    if not tops:
        return None
    clauses = []
    for top in tops[:max_tokens]:
        paths = sorted(graph_paths(top), key=lambda p: (-p[1], len(p[0])))
        seen: list[str] = []
        for path, _ in paths:
            text = describe_path(path)
            if text not in seen:
                seen.append(text)
            if len(seen) >= max_paths:
                break
        clauses.append(f"{quote(top.token or '')} " + (" or ".join(seen) or "in any context"))
    more = len(tops) - max_tokens
    tail = f"; and {more} other token{'s' if more > 1 else ''}" if more > 0 else ""
    return "Fires on " + "; on ".join(clauses) + tail + "."


class GraphExplainer:
    name = "graph"

    def explain(self, units: Sequence[UnitInput]) -> list[Explanation]:
        out = []
        for unit in units:
            t0 = time.perf_counter()
            if unit.graph is None:
                out.append(Explanation(unit.examples.unit, self.name, None, status="failed",
                                       error="no graph was built for this unit"))
                continue
            text = graph_sentence(unit.graph)
            out.append(Explanation(unit.examples.unit, self.name, text,
                                   status="ok" if text else "empty",
                                   seconds=time.perf_counter() - t0))
        return out


def top_tokens(ex: UnitExamples, k: int = 5) -> list[tuple[str, float]]:
    """Tokens by their max normalised activation in the train contexts (the token lookup)."""
    best: dict[str, float] = {}
    for ctx in ex.train:
        for tok, act in zip(ctx.tokens, ctx.acts, strict=True):
            norm = act / ex.a_max
            if norm > best.get(tok, 0.0):
                best[tok] = norm
    return sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


class TokensExplainer:
    name = "tokens"

    def __init__(self, k: int = 5, min_norm: float = 0.2) -> None:
        self.k = k
        self.min_norm = min_norm

    def explain(self, units: Sequence[UnitInput]) -> list[Explanation]:
        out = []
        for unit in units:
            toks = [t for t, v in top_tokens(unit.examples, self.k) if v >= self.min_norm]
            text = ("Fires on the tokens " + ", ".join(quote(t) for t in toks) + ".") if toks \
                else None
            out.append(Explanation(unit.examples.unit, self.name, text,
                                   status="ok" if text else "empty"))
        return out


__all__ = ["GraphExplainer", "TokensExplainer", "describe_path", "graph_paths", "graph_sentence",
           "top_tokens"]
