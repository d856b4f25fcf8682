"""Drawing a neuron graph: the condensed layered view of the paper (§3 "Visualisation", Fig. 1-6).

The trie is the artefact; the drawing is a summary for a reader. Following the paper we drop
ignore (wildcard) and termination information, then merge trie nodes that carry the same token at
the same depth, so a context token shared by many paths appears once per column. Activating nodes
are red (brighter = higher normalised activation), context nodes blue (brighter = more important),
and nodes where a path of the full trie ends get a bold outline.

Layout reads like text: context on the left, the activating token on the right, edges pointing
from a context token towards the token the neuron fires on. An edge that skipped wildcard nodes
is dashed and spans as many columns as tokens it skipped. Tokens merged across different
activating tokens connect their paths, so a polysemantic neuron shows as disconnected subgraphs.

Graphviz's `dot` lays the graph out; `condense` is pure Python so the browser can reuse the
node table (hover data) without Graphviz.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Any

from neuron2graph.errors import N2GError
from neuron2graph.n2g.graph import NeuronGraph, Node

FORMATS = ("svg", "png", "dot")


@dataclass
class DrawNode:
    """One node of the condensed graph: every trie node with this token at this depth."""

    id: str
    token: str
    depth: int
    kind: str  # "activating" | "context"
    activation: float = 0.0
    importance: float = 0.0
    ends: bool = False
    end_activation: float | None = None
    examples: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "token": self.token, "depth": self.depth, "kind": self.kind,
            "activation": round(self.activation, 4), "importance": round(self.importance, 4),
            "ends": self.ends,
            "end_activation": (
                None if self.end_activation is None else round(self.end_activation, 4)
            ),
            "examples": self.examples,
        }


@dataclass
class Condensed:
    nodes: dict[tuple[int, str], DrawNode]
    edges: dict[tuple[str, str], int]
    """(from context node id, to node id) -> span in columns (> 1 when wildcards were skipped)."""

    def components(self) -> list[list[str]]:
        """Node ids of each connected component (polysemantic neurons have several)."""
        parent = {n.id: n.id for n in self.nodes.values()}

        def find(x: str) -> str:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for a, b in self.edges:
            parent[find(a)] = find(b)
        groups: dict[str, list[str]] = {}
        for n in self.nodes.values():
            groups.setdefault(find(n.id), []).append(n.id)
        return list(groups.values())

    def node_table(self) -> dict[str, dict[str, Any]]:
        return {n.id: n.to_json() for n in self.nodes.values()}


def condense(graph: NeuronGraph) -> Condensed:
    """Merge trie nodes by (depth, token), skipping wildcard nodes, keeping what ends a path."""
    nodes: dict[tuple[int, str], DrawNode] = {}
    edges: dict[tuple[str, str], int] = {}

    def get(node: Node, kind: str) -> DrawNode:
        assert node.token is not None
        key = (node.depth, node.token)
        dn = nodes.get(key)
        if dn is None:
            dn = DrawNode(id=f"n{node.depth}_{len(nodes)}", token=node.token, depth=node.depth,
                          kind=kind)
            nodes[key] = dn
        dn.activation = max(dn.activation, node.activation)
        dn.importance = max(dn.importance, node.importance)
        if node.is_end:
            dn.ends = True
            ea = node.end_activation or 0.0
            dn.end_activation = ea if dn.end_activation is None else max(dn.end_activation, ea)
        for ex in node.examples:
            if ex not in dn.examples:
                dn.examples.append(ex)
        return dn

    def visit(node: Node, nearest: DrawNode) -> None:
        for child in node.children.values():
            if child.token is None:  # wildcard: keep walking, bridge the edge over it
                visit(child, nearest)
                continue
            dn = get(child, "context")
            span = child.depth - nearest.depth
            key = (dn.id, nearest.id)
            edges[key] = min(edges.get(key, span), span)
            visit(child, dn)

    for top in graph.root.children.values():
        if top.token is None:
            continue
        visit(top, get(top, "activating"))
    return Condensed(nodes=nodes, edges=edges)


def display_token(token: str) -> str:
    """Make whitespace visible: a leading space as '␣', newlines and tabs as escapes."""
    text = token.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    if text.startswith(" "):
        text = "␣" + text[1:]
    return text if text.strip() else text.replace(" ", "␣") or "∅"


def _mix(level: float, rgb: tuple[int, int, int]) -> str:
    """White blended towards `rgb` by `level` in [0, 1]."""
    t = max(0.0, min(1.0, level))
    r, g, b = (round(255 + (c - 255) * (0.15 + 0.85 * t)) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


RED = (220, 30, 30)
BLUE = (40, 100, 230)


def node_colour(node: DrawNode) -> str:
    if node.kind == "activating":
        return _mix(node.activation, RED)
    return _mix(node.importance, BLUE)


def _dot_escape(text: str) -> str:
    # dot interprets backslash escapes (\n, \l, \N ...) inside quoted labels.
    return text.replace("\\", "\\\\").replace('"', '\\"')


def to_digraph(graph: NeuronGraph, condensed: Condensed | None = None) -> Any:
    """A `graphviz.Digraph` of the condensed graph (imported lazily: optional at import time)."""
    import graphviz

    cg = condensed or condense(graph)
    dot = graphviz.Digraph(name=f"neuron_{graph.neuron.replace(':', '_')}")
    dot.attr(rankdir="LR", bgcolor="transparent", nodesep="0.15", ranksep="0.35",
             label=f"neuron {graph.neuron}", labelloc="t", fontname="Helvetica", fontsize="12")
    dot.attr("node", shape="box", style="rounded,filled", fontname="Helvetica", fontsize="11",
             margin="0.08,0.04", height="0.3")
    dot.attr("edge", arrowsize="0.6", color="#666666")
    for node in cg.nodes.values():
        kind = "activation" if node.kind == "activating" else "importance"
        value = node.activation if node.kind == "activating" else node.importance
        level = value
        font = "white" if level > 0.6 else "black"
        dot.node(
            node.id,
            label=_dot_escape(display_token(node.token)),
            id=node.id,
            tooltip=_dot_escape(f"{display_token(node.token)} ({kind} {value:.2f})"),
            fillcolor=node_colour(node),
            fontcolor=font,
            penwidth="3" if node.ends else "1",
            color="black" if node.ends else "#555555",
            **{"class": f"n2g-node n2g-{node.kind}"},
        )
    for (src, dst), span in cg.edges.items():
        attrs: dict[str, str] = {"minlen": str(span)}
        if span > 1:
            attrs["style"] = "dashed"
        dot.edge(src, dst, **attrs)
    if not cg.nodes:
        dot.node("empty", label="(empty graph)", shape="plaintext", style="")
    return dot


def _require_dot() -> None:
    if shutil.which("dot") is None:
        raise N2GError(
            "Graphviz `dot` is not installed: install Debian graphviz "
            "(apt-get install graphviz) or use --format dot"
        )


def render(graph: NeuronGraph, fmt: str = "svg") -> bytes:
    """The drawing as bytes: an SVG document, a PNG image, or the dot source."""
    if fmt not in FORMATS:
        raise N2GError(f"unknown drawing format {fmt!r}: use one of {', '.join(FORMATS)}")
    digraph = to_digraph(graph)
    if fmt == "dot":
        return str(digraph.source).encode("utf-8")
    _require_dot()
    import graphviz

    try:
        data: bytes = digraph.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise N2GError("Graphviz `dot` is not installed: install Debian graphviz") from None
    return data


def render_svg_inline(graph: NeuronGraph) -> str:
    """SVG markup for embedding in a page (XML prolog and doctype removed)."""
    svg = render(graph, "svg").decode("utf-8")
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


__all__ = [
    "FORMATS", "Condensed", "DrawNode", "condense", "display_token", "render",
    "render_svg_inline", "to_digraph",
]
