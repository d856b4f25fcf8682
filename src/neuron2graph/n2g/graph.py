"""The neuron graph: a trie that predicts a neuron's activation on any text, without the model.

Structure (paper §3): the root's children are *activating* nodes, one per token on which the neuron
fires. Below an activating node, each level is one token further to the left in the text: a
*context* node (an important token that must match exactly) or an *ignore* node (a wildcard). A
node that ends a path is a *termination*: it stores the normalised activation to predict when the
text matches the whole path.

Prediction fixes the official code's greedy search: every path is explored (a wildcard and an
exact child are both tried, with backtracking), and the activation of the *longest* complete match
is returned (ties go to the higher activation).

Tokens are keyed by their text piece (e.g. ``" except"``), so a graph is readable, searchable and
usable without the model; `fold=True` reproduces the official code's case/whitespace folding.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from neuron2graph.errors import N2GError
from neuron2graph.files import write_json_atomic

SCHEMA = "neuron2graph/graph"
SCHEMA_VERSION = 1
Search = Literal["longest", "greedy", "calibrated"]
IGNORE = "\x00*"  # key of the wildcard child; cannot collide with a real token piece


def fold_token(token: str) -> str:
    """The official code's normalisation: strip whitespace and lower-case."""
    return token.strip().lower()


@dataclass
class Node:
    """One trie node. `token` is None for ignore (wildcard) nodes and for the root."""

    token: str | None
    depth: int
    importance: float = 0.0
    """Max importance seen for this context token (activating nodes: 1.0)."""
    activation: float = 0.0
    """Activating nodes: max normalised activation seen on this token."""
    end_activation: float | None = None
    """Termination: mean normalised activation of the examples whose path ends here."""
    end_count: int = 0
    examples: list[int] = field(default_factory=list)
    """Ids of the training examples that pass through this node (capped)."""
    children: dict[str, Node] = field(default_factory=dict)
    cal_count: int = 0
    """Calibration (`n2g/calibrate.py`, the improved method): train positions whose chosen match
    passed through this node, the sum of their normalised activations, and how many fired."""
    cal_sum: float = 0.0
    cal_fire: int = 0

    @property
    def is_ignore(self) -> bool:
        return self.token is None and self.depth > 0

    @property
    def is_end(self) -> bool:
        return self.end_activation is not None

    def child(self, key: str, token: str | None, depth: int) -> Node:
        node = self.children.get(key)
        if node is None:
            node = Node(token=token, depth=depth)
            self.children[key] = node
        return node

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children.values():
            yield from child.walk()

    def to_json(self) -> dict[str, Any]:
        # Numbers are written at full precision (JSON floats round-trip exactly through repr), so
        # a saved graph predicts bit-identically to the graph that was saved.
        out: dict[str, Any] = {"token": self.token}
        if self.importance:
            out["importance"] = self.importance
        if self.activation:
            out["activation"] = self.activation
        if self.end_activation is not None:
            out["end_activation"] = self.end_activation
            out["end_count"] = self.end_count
        if self.examples:
            out["examples"] = self.examples
        if self.cal_count:
            out["cal"] = [self.cal_count, self.cal_sum, self.cal_fire]
        if self.children:
            out["children"] = [c.to_json() for c in self.children.values()]
        return out


@dataclass(frozen=True)
class Match:
    """Why a token was predicted to fire: the matched path, leftwards from the activating token."""

    position: int
    activation: float
    path: tuple[tuple[int, str | None], ...]
    """(text position, node token or None for a wildcard) from the activating token leftwards."""

    @property
    def length(self) -> int:
        return len(self.path)


MAX_EXAMPLES_PER_NODE = 32


class NeuronGraph:
    """A neuron's graph: build with `add_path`, predict with `predict`, persist with `save`."""

    def __init__(
        self,
        neuron: str,
        *,
        fold: bool = False,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.neuron = neuron
        self.fold = fold
        self.meta: dict[str, Any] = dict(meta or {})
        self.root = Node(token=None, depth=0)

    # ----------------------------------------------------------------- building
    def key(self, token: str) -> str:
        return fold_token(token) if self.fold else token

    def add_path(
        self,
        activating_token: str,
        activation: float,
        context: Sequence[tuple[str, float] | None],
        *,
        example: int | None = None,
    ) -> None:
        """Insert one firing: the activating token, then its left context, nearest first.

        `context` holds `(token, importance)` for important tokens and None for ignored ones; it
        must end with the last important token (the termination). Trailing Nones are dropped.
        """
        context = list(context)
        while context and context[-1] is None:
            context.pop()
        node = self.root.child(self.key(activating_token), activating_token, 1)
        node.activation = max(node.activation, activation)
        node.importance = 1.0
        self._note_example(node, example)
        for depth, item in enumerate(context, start=2):
            if item is None:
                node = node.child(IGNORE, None, depth)
            else:
                token, importance = item
                node = node.child(self.key(token), token, depth)
                node.importance = max(node.importance, importance)
            self._note_example(node, example)
        total = (node.end_activation or 0.0) * node.end_count + activation
        node.end_count += 1
        node.end_activation = total / node.end_count

    @staticmethod
    def _note_example(node: Node, example: int | None) -> None:
        if example is not None and example not in node.examples:
            if len(node.examples) < MAX_EXAMPLES_PER_NODE:
                node.examples.append(example)

    # --------------------------------------------------------------- prediction
    def match(
        self, tokens: Sequence[str], position: int, *, search: Search = "longest"
    ) -> Match | None:
        """The longest complete match ending at `position` (ties: higher activation), or None.

        `search="greedy"` reproduces the official code: at each step take the exact child if there
        is one, else the wildcard, never backtrack, and return the last termination passed.
        """
        first = self.root.children.get(self.key(tokens[position]))
        if first is None:
            return None
        if search == "greedy":
            return self._greedy(tokens, position, first)
        if search != "longest":
            raise N2GError(f"unknown search {search!r}: use 'longest' or 'greedy'")
        best: tuple[int, float, list[Node]] | None = None
        # Depth-first search with explicit backtracking over exact and wildcard children.
        stack: list[tuple[Node, int, list[Node]]] = [(first, position - 1, [first])]
        while stack:
            node, pos, path = stack.pop()
            if node.end_activation is not None:
                cand = (len(path), node.end_activation, path)
                if best is None or cand[:2] > best[:2]:
                    best = cand
            if pos < 0 or not node.children:
                continue
            exact = node.children.get(self.key(tokens[pos]))
            if exact is not None:
                stack.append((exact, pos - 1, [*path, exact]))
            wildcard = node.children.get(IGNORE)
            if wildcard is not None:
                stack.append((wildcard, pos - 1, [*path, wildcard]))
        if best is None:
            return None
        _length, activation, nodes = best
        return Match(
            position=position,
            activation=activation,
            path=tuple((position - i, n.token) for i, n in enumerate(nodes)),
        )

    def _greedy(self, tokens: Sequence[str], position: int, first: Node) -> Match | None:
        node, pos, path = first, position - 1, [first]
        last: tuple[float, list[Node]] | None = None
        while True:
            if node.end_activation is not None:
                last = (node.end_activation, list(path))
            if pos < 0:
                break
            nxt = node.children.get(self.key(tokens[pos])) or node.children.get(IGNORE)
            if nxt is None:
                break
            node, pos = nxt, pos - 1
            path.append(nxt)
        if last is None:
            return None
        activation, nodes = last
        return Match(
            position=position,
            activation=activation,
            path=tuple((position - i, n.token) for i, n in enumerate(nodes)),
        )

    def predict(self, tokens: Sequence[str], *, search: Search | None = None) -> list[float]:
        """Predicted normalised activation for every token (0.0 where nothing matches).

        `search="calibrated"`: the improved method's values measured over all matches of a path,
        with back-off (`n2g/calibrate.py`), the default for a calibrated graph; else "longest"."""
        if search is None:
            search = "calibrated" if "calibration" in self.meta else "longest"
        if search == "calibrated":
            from neuron2graph.n2g.calibrate import predict_calibrated

            return predict_calibrated(self, tokens)
        out = [0.0] * len(tokens)
        roots = self.root.children
        key = self.key
        for i, tok in enumerate(tokens):
            if key(tok) in roots:
                m = self.match(tokens, i, search=search)
                if m is not None:
                    out[i] = m.activation
        return out

    def explain(self, tokens: Sequence[str], *, search: Search = "longest") -> list[Match | None]:
        """Like `predict`, but return the matched path behind every predicted firing."""
        return [self.match(tokens, i, search=search) for i in range(len(tokens))]

    # ------------------------------------------------------------ introspection
    @property
    def activating_tokens(self) -> dict[str, float]:
        return {n.token or "": n.activation for n in self.root.children.values()}

    def context_tokens(self) -> dict[str, float]:
        """Important (non-wildcard) context tokens with their max importance."""
        out: dict[str, float] = {}
        for top in self.root.children.values():
            for node in top.walk():
                if node is not top and node.token is not None:
                    out[node.token] = max(out.get(node.token, 0.0), node.importance)
        return out

    def n_nodes(self) -> int:
        return sum(1 for _ in self.root.walk()) - 1

    def n_activating(self) -> int:
        """Distinct activating tokens (children of the root)."""
        return len(self.root.children)

    def is_empty(self) -> bool:
        return not self.root.children

    # ------------------------------------------------------------ serialisation
    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "version": SCHEMA_VERSION,
            "neuron": self.neuron,
            "fold": self.fold,
            "meta": self.meta,
            "root": [c.to_json() for c in self.root.children.values()],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], *, source: str = "graph") -> NeuronGraph:
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise N2GError(f"{source} is not a neuron2graph graph file: build one with `n2g build`")
        if data.get("version") != SCHEMA_VERSION:
            raise N2GError(
                f"{source} has graph schema version {data.get('version')}, this neuron2graph "
                f"reads version {SCHEMA_VERSION}: rebuild it with `n2g build --overwrite`"
            )
        graph = cls(str(data["neuron"]), fold=bool(data.get("fold", False)), meta=data.get("meta"))

        def load(obj: dict[str, Any], parent: Node) -> None:
            token = obj.get("token")
            node = Node(
                token=token,
                depth=parent.depth + 1,
                importance=float(obj.get("importance", 0.0)),
                activation=float(obj.get("activation", 0.0)),
                end_activation=(
                    float(obj["end_activation"]) if obj.get("end_activation") is not None else None
                ),
                end_count=int(obj.get("end_count", 0)),
                examples=list(obj.get("examples", [])),
            )
            if obj.get("cal"):
                count, total, fire = obj["cal"]
                node.cal_count, node.cal_sum, node.cal_fire = int(count), float(total), int(fire)
            parent.children[IGNORE if token is None else graph.key(token)] = node
            for child in obj.get("children", []):
                load(child, node)

        for top in data.get("root", []):
            load(top, graph.root)
        return graph

    def save(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_json(), indent=None)

    @classmethod
    def load(cls, path: str | Path) -> NeuronGraph:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise N2GError(f"no graph file at {path}: check the path or run `n2g build`") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise N2GError(
                f"{path} is not valid JSON: the graph file is corrupt, rebuild it"
            ) from None
        return cls.from_json(data, source=str(path))
