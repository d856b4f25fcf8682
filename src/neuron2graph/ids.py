"""Neuron identifiers, written `L:N` everywhere (CLI, files, API)."""

from __future__ import annotations

from dataclasses import dataclass

from neuron2graph.errors import N2GError


@dataclass(frozen=True, order=True)
class NeuronId:
    layer: int
    neuron: int

    def __str__(self) -> str:
        return f"{self.layer}:{self.neuron}"

    @classmethod
    def parse(cls, text: str) -> NeuronId:
        parts = text.strip().split(":")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise N2GError(f"bad neuron id {text!r}: write it as LAYER:NEURON, e.g. 3:41")
        return cls(int(parts[0]), int(parts[1]))

    @classmethod
    def parse_list(cls, text: str) -> list[NeuronId]:
        """Parse `3:41,3:100` into ids, keeping order and dropping duplicates."""
        seen: dict[NeuronId, None] = {}
        for part in text.split(","):
            if part.strip():
                seen[cls.parse(part)] = None
        if not seen:
            raise N2GError("no neuron ids given: pass e.g. --neurons 3:41,3:100")
        return list(seen)


def parse_layers(text: str) -> list[int]:
    """Parse `0,1,2`, `0-3` or `0-3,10` into a sorted list of distinct layer indices."""
    layers: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                layers.update(range(lo, hi + 1))
            else:
                layers.add(int(part))
        except ValueError:
            raise N2GError(f"bad layer list {text!r}: write e.g. 0,1,2 or 0-3") from None
    if not layers:
        raise N2GError("no layers given: pass e.g. --layers 0-3")
    if min(layers) < 0:
        raise N2GError(f"bad layer list {text!r}: layers are counted from 0")
    return sorted(layers)
