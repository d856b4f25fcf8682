"""Unit identifiers: `LAYER:INDEX` within a run, `SITE/LAYER:INDEX` where runs of kinds meet.

A *unit* is one coordinate that a run studies: an MLP neuron (site `mlp`), or, with other unit
sources (see `units/`), an SAE or transcoder latent. A run records one kind of unit (named in its
manifest), so inside a run ids stay `LAYER:INDEX` (the CLI's `--neurons 3:41` selects units of
whatever kind the run holds). Where runs of different kinds meet (comparison tables, the browser
across runs) ids are written `UnitId.qualified`: `SITE/LAYER:INDEX`, e.g. `mlp/3:41`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from neuron2graph.errors import N2GError

_SITE = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True, order=True)
class UnitId:
    """One unit: `(layer, index)` at `site` (`mlp` for MLP neurons). Orders by layer, index."""

    layer: int
    index: int
    site: str = "mlp"

    def __post_init__(self) -> None:
        if not _SITE.match(self.site):
            raise N2GError(f"bad unit site {self.site!r}: use letters, digits, '_', '.' or '-'")

    @property
    def neuron(self) -> int:
        """The index, under the name used before units generalised neurons."""
        return self.index

    def __str__(self) -> str:
        return f"{self.layer}:{self.index}"

    @property
    def qualified(self) -> str:
        """`SITE/LAYER:INDEX`: the id where runs of different unit kinds meet."""
        return f"{self.site}/{self}"

    @classmethod
    def parse(cls, text: str, site: str = "mlp") -> UnitId:
        """Parse `LAYER:INDEX` (at `site`) or `SITE/LAYER:INDEX`."""
        given, slash, rest = text.strip().rpartition("/")
        if slash:
            site = given.strip()
            if not _SITE.match(site):
                raise N2GError(
                    f"bad unit id {text!r}: write it as LAYER:NEURON or SITE/LAYER:NEURON, "
                    "e.g. 3:41 or mlp/3:41"
                )
        parts = rest.split(":")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise N2GError(
                f"bad neuron id {text!r}: write it as LAYER:NEURON, e.g. 3:41 (or "
                "SITE/LAYER:NEURON where runs of several unit kinds meet, e.g. mlp/3:41)"
            )
        return cls(int(parts[0]), int(parts[1]), site)

    @classmethod
    def parse_list(cls, text: str, site: str = "mlp") -> list[UnitId]:
        """Parse `3:41,3:100` into ids, keeping order and dropping duplicates."""
        seen: dict[UnitId, None] = {}
        for part in text.split(","):
            if part.strip():
                seen[cls.parse(part, site)] = None
        if not seen:
            raise N2GError("no neuron ids given: pass e.g. --neurons 3:41,3:100")
        return list(seen)


NeuronId = UnitId
"""The name used before units generalised neurons; `NeuronId(3, 41)` is the MLP neuron 3:41."""


ALL_LAYERS = "all"
"""The `--layers` value meaning every layer (which ones, the command knows: see `layer_option`)."""

LAYERS_HELP = "e.g. 0,1,2, 0-3, 0-3,10 or all"
"""How a `--layers` value is written (in help texts and error messages)."""


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
            raise N2GError(f"bad layer list {text!r}: write {LAYERS_HELP}") from None
    if not layers:
        raise N2GError(f"no layers given: pass e.g. --layers 0-3 (or --layers {ALL_LAYERS})")
    if min(layers) < 0:
        raise N2GError(f"bad layer list {text!r}: layers are counted from 0")
    return sorted(layers)


def layer_option(text: str | None) -> list[int] | None:
    """A `--layers` value as every command reads it: None means every layer, else the list.

    None comes from an absent option or `all`; the command resolves it (the model's layers for
    record, decode and run; the run's recorded layers for eval and explain), so this one helper
    needs no model. A bad value is one line naming the accepted forms.
    """
    if text is None:
        return None
    if text.strip().lower() == ALL_LAYERS:
        return None
    return parse_layers(text)
