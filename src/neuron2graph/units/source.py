"""The unit seam: `ActivationSource`, the one interface every stage reads unit activations through.

Record, N2G's runner, the browser's live prediction, clamping and weight decoding never touch a
hook or a module path: they ask a source how many units a layer has (`n_units`), check an id
(`check`), read activations for tokens (`activations`, one forward that stops after the deepest
layer needed), and, for weight-based work, a unit's write and read directions in residual-stream
space (`output_directions`, `input_directions`). MLP neurons (`neurons.py`) are one source; SAE
encoders and transcoders are others.

Adding a unit kind is one new module here with a subclass of `ActivationSource`, plus one line
in `registry.py`'s `SOURCES` mapping its spec (e.g. `sae:PATH`) to the constructor. See
docs/units.md.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from neuron2graph.errors import N2GError
from neuron2graph.ids import UnitId
from neuron2graph.models.forward import pad_batch
from neuron2graph.models.loading import LoadedModel


class ActivationSource(ABC):
    """Where a run's units come from: a model plus a rule that turns its hook points into units.

    `kind` names the unit kind in run manifests (`units: "neurons"`); `site` is the prefix of
    qualified ids (`mlp/3:41`); `spec` is what `registry.make_source` takes to rebuild the source.
    """

    kind: str = ""
    site: str = ""
    sparse: bool = False
    """True when most activations are exactly zero (SAE latents): recording then keeps the random
    sample as nonzeros only. Neurons are dense; either way the stored values are identical."""
    supports_cache: bool = False
    """`activations` takes `cache=`, a KV cache passed to the model's forward (filled by it and
    continued from it, see `models.hooks.capture`). N2G's saliency then runs each masked variant
    from the KV cache of the prefix it shares with its prompt instead of from token 0."""

    def __init__(self, lm: LoadedModel) -> None:
        self.lm = lm

    # ------------------------------------------------------------------ shape
    @property
    def n_layers(self) -> int:
        return self.lm.n_layers

    @property
    def spec(self) -> str:
        """The registry spec that rebuilds this source (`neurons`, `sae:PATH`)."""
        return self.kind

    @abstractmethod
    def n_units(self, layer: int) -> int:
        """Units of `layer` (d_mlp for neurons, the dictionary size for an SAE)."""

    def layers(self) -> list[int]:
        """The layers that have units (every layer for neurons; the SAE's layers for SAEs)."""
        return list(range(self.n_layers))

    def check(self, unit: UnitId | int, index: int | None = None) -> None:
        """Raise a one-line `N2GError` unless the layer (and the index, if any) exists.

        Call as `check(UnitId(3, 41))`, `check(3, 41)` or `check(3)` (the layer only).
        """
        if isinstance(unit, UnitId):
            layer, index = unit.layer, unit.index
        else:
            layer = unit
        if layer not in self.layers():
            have = self.layers()
            span = f"{have[0]}..{have[-1]}" if have else "none"
            raise N2GError(f"layer {layer} is out of range: {self.describe()} has layers {span}")
        if index is not None and not 0 <= index < self.n_units(layer):
            raise N2GError(
                f"{self.noun} {layer}:{index} is out of range: layer {layer} of {self.describe()} "
                f"has {self.noun}s 0..{self.n_units(layer) - 1}"
            )

    @property
    def noun(self) -> str:
        """What one unit is called in messages ("neuron", "latent")."""
        return "unit"

    def describe(self) -> str:
        return f"{self.lm.spec} ({self.kind})"

    def identity(self) -> dict[str, Any]:
        """What a run manifest stores about the units (part of the recording's identity)."""
        return {"units": self.kind, "site": self.site, "source": self.spec}

    def unit_id(self, layer: int, index: int) -> UnitId:
        return UnitId(layer, index, self.site)

    # ------------------------------------------------------------ activations
    @abstractmethod
    def activations(
        self,
        input_ids: Int[Tensor, "batch pos"],
        layers: Sequence[int],
        *,
        attention_mask: Int[Tensor, "batch pos"] | None = None,
        units: dict[int, Tensor] | None = None,
        cache: Any = None,
    ) -> dict[int, Float[Tensor, "batch pos units"]]:
        """`{layer: activations}` (float32, model device) from one forward that stops after the
        deepest layer in `layers`. `units[layer]`, an index tensor, keeps only those units.
        Padding must be on the right. `cache` is only passed when `supports_cache` is True."""

    def _check_request(self, layers: Sequence[int], units: dict[int, Tensor] | None) -> None:
        for layer in layers:
            self.check(layer)
        for layer, index in (units or {}).items():
            if index.numel():
                self.check(layer, int(index.min()))
                self.check(layer, int(index.max()))

    def unit_activations(
        self,
        sequences: Sequence[Sequence[int]],
        layer: int,
        indices: Sequence[int],
        *,
        batch_size: int = 64,
    ) -> list[Float[Tensor, "pos n"]]:
        """Activations of a few units of one layer on variable-length token sequences.

        Sequences are sorted by length and batched with right padding (less padding, same
        results); the result is in input order, one `[len(seq), len(indices)]` tensor each.
        """
        tok = self.lm.tokenizer
        pad = getattr(tok, "pad_token_id", None) if tok is not None else None
        pad_id = 0 if pad is None else int(pad)
        index = torch.as_tensor(list(indices), dtype=torch.long)
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        results: list[Tensor | None] = [None] * len(sequences)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            ids, mask = pad_batch([sequences[i] for i in chunk], pad_id)
            acts = self.activations(ids, [layer], attention_mask=mask, units={layer: index})
            acts_cpu = acts[layer].cpu()
            for row, i in enumerate(chunk):
                results[i] = acts_cpu[row, : len(sequences[i])]
        return [r if r is not None else torch.zeros(0, len(index)) for r in results]

    # --------------------------------------------------------------- clamping
    def clamped(self, unit: UnitId, value: float) -> AbstractContextManager[None]:
        """A context in which `unit` reads `value` at every position (for `decode.clamp`)."""
        raise N2GError(f"{self.describe()} cannot clamp its units")

    # ------------------------------------------------------------- directions
    def output_directions(self, layer: int) -> Float[Tensor, "units d_model"]:
        """Raw residual-stream directions the units of `layer` write (one row per unit)."""
        raise N2GError(f"{self.describe()} has no output directions: decoding needs them")

    def input_directions(self, layer: int) -> tuple[Tensor, Tensor | None]:
        """Raw residual-stream directions the units of `layer` read (and gate rows, if gated)."""
        raise N2GError(f"{self.describe()} has no input directions: decoding needs them")

    def output_direction(self, unit: UnitId) -> Float[Tensor, " d_model"]:
        self.check(unit)
        return self.output_directions(unit.layer)[unit.index]

    def input_direction(self, unit: UnitId) -> Float[Tensor, " d_model"]:
        self.check(unit)
        return self.input_directions(unit.layer)[0][unit.index]
