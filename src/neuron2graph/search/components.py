"""Polysemanticity: the disconnected behaviours of a graph, counted on its condensed layered view.

Definition (the paper's visualisation, §3 "Visualisation"):

1. Drop ignore (wildcard) nodes and the termination marks; a kept node hangs under its nearest
   kept ancestor, so ``" all" -> * -> " except"`` becomes the edge ``(3, " all") - (1, " except")``.
2. Merge nodes by token at each depth: a condensed node is ``(depth, token)``, depth counted in
   text positions left of the activating token (activating tokens are depth 1, wildcards still
   take up a position, so depth is the token's offset in the text plus one).
3. The components of that undirected graph are the neuron's *behaviours*. Because every kept node
   is linked to its activating token, a component is a set of activating tokens whose context
   trees share at least one ``(depth, token)`` node, plus those context nodes. Two activating
   tokens with no shared context node (an activating token with no context at all included) are
   separate behaviours.

The drawing helper reuses `condensed_components` to colour or lay out each behaviour.
"""

from __future__ import annotations

from neuron2graph.n2g.graph import NeuronGraph, Node

CondensedNode = tuple[int, str]
"""``(depth, token key)``: depth 1 = activating token, 2 = the token just before it, ..."""


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[CondensedNode, CondensedNode] = {}

    def add(self, x: CondensedNode) -> None:
        self.parent.setdefault(x, x)

    def find(self, x: CondensedNode) -> CondensedNode:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: CondensedNode, b: CondensedNode) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def condensed_components(graph: NeuronGraph) -> list[set[CondensedNode]]:
    """The behaviours of `graph`: sets of condensed nodes ``(depth, token)``, biggest first.

    The activating tokens of a component are its depth-1 nodes (`activating_of`). Tokens are the
    graph's keys (folded when the graph was built with ``fold=True``), as in the drawing.
    """
    uf = _UnionFind()
    for top in graph.root.children.values():
        if top.token is None:  # a malformed graph; an activating node always has a token
            continue
        top_key: CondensedNode = (1, graph.key(top.token))
        uf.add(top_key)
        # Walk the subtree, carrying the nearest kept (non-wildcard) ancestor.
        stack: list[tuple[Node, CondensedNode]] = [
            (child, top_key) for child in top.children.values()
        ]
        while stack:
            node, kept = stack.pop()
            if node.token is not None:
                here: CondensedNode = (node.depth, graph.key(node.token))
                uf.add(here)
                uf.union(here, kept)
                kept = here
            stack.extend((child, kept) for child in node.children.values())
    groups: dict[CondensedNode, set[CondensedNode]] = {}
    for cnode in uf.parent:
        groups.setdefault(uf.find(cnode), set()).add(cnode)
    return sorted(groups.values(), key=lambda g: (-len(g), sorted(g)))


def activating_of(component: set[CondensedNode]) -> list[str]:
    """The activating tokens of one component, sorted."""
    return sorted(token for depth, token in component if depth == 1)


def behaviours(graph: NeuronGraph) -> list[list[str]]:
    """Activating tokens of each behaviour, strongest behaviour first (by its max activation)."""
    acts = {graph.key(t): a for t, a in graph.activating_tokens.items()}
    groups = [activating_of(c) for c in condensed_components(graph)]
    return sorted(groups, key=lambda g: (-max(acts.get(t, 0.0) for t in g), g))


def n_components(graph: NeuronGraph) -> int:
    """How many disconnected behaviours the graph has (0 for an empty graph)."""
    return len(condensed_components(graph))


__all__ = ["CondensedNode", "activating_of", "behaviours", "condensed_components", "n_components"]
