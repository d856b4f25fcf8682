"""The explainer interface: train contexts (and optionally a graph) in, one sentence out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from neuron2graph.explain.examples import UnitExamples


@dataclass
class UnitInput:
    """What an explainer may use for one unit."""

    examples: UnitExamples
    graph: Any = None
    """The unit's NeuronGraph built on the train contexts (None when not built)."""


@dataclass
class Explanation:
    unit: str
    explainer: str
    text: str | None
    """The sentence; None when the explainer failed or its answer could not be parsed."""
    status: str = "ok"
    """ok, unparseable (the model answered without a readable [EXPLANATION]:), failed (the call
    failed, see `error`), or empty (nothing to explain from, e.g. an empty graph)."""
    raw: str | None = None
    """The model's whole answer (LLM explainers), kept so unparseable answers can be read."""
    error: str | None = None
    model: str | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Explanation:
        return cls(**data)


class Explainer(Protocol):
    name: str

    def explain(self, units: Sequence[UnitInput]) -> list[Explanation]: ...


def quote(token: str) -> str:
    """A token piece shown with its spaces visible: ` except` -> "` except`"."""
    return "`" + token.replace("\n", "\\n").replace("`", "'") + "`"
