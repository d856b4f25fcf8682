"""MLP neurons as units: the input of each layer's MLP output projection (hook point `mlp_post`).

That is the activation after the non-linearity (and after the gate, for gated MLPs): the
coordinates the down projection writes into the residual stream. This is the unit kind every
run recorded before unit kinds existed; old runs without a `units` field are neuron runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from jaxtyping import Float, Int
from torch import Tensor

from neuron2graph.decode.weights import read_rows, write_columns
from neuron2graph.ids import UnitId
from neuron2graph.models.forward import layer_activations
from neuron2graph.units.source import ActivationSource


class MlpNeurons(ActivationSource):
    """MLP neurons of every layer of the model (`d_mlp` units per layer)."""

    kind = "neurons"
    site = "mlp"
    supports_cache = True

    def n_units(self, layer: int) -> int:
        return self.lm.n_neurons

    @property
    def noun(self) -> str:
        return "neuron"

    def describe(self) -> str:
        return self.lm.spec

    def activations(
        self,
        input_ids: Int[Tensor, "batch pos"],
        layers: Sequence[int],
        *,
        attention_mask: Int[Tensor, "batch pos"] | None = None,
        units: dict[int, Tensor] | None = None,
        cache: Any = None,
    ) -> dict[int, Float[Tensor, "batch pos units"]]:
        self._check_request(layers, units)
        return layer_activations(self.lm, input_ids, layers, attention_mask=attention_mask,
                                 neurons=units, cache=cache)

    @contextmanager
    def clamped(self, unit: UnitId, value: float) -> Iterator[None]:
        """A pre-hook on the MLP output projection overwrites the neuron's input coordinate."""
        self.check(unit)
        module = self.lm.sites.mlp_out(self.lm.layer_modules[unit.layer])
        index = unit.index

        def hook(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
            acts = args[0].clone()
            acts[..., index] = value
            return (acts, *args[1:])

        handle = module.register_forward_pre_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def output_directions(self, layer: int) -> Float[Tensor, "units d_model"]:
        self.check(layer)
        return write_columns(self.lm, layer)

    def input_directions(self, layer: int) -> tuple[Tensor, Tensor | None]:
        self.check(layer)
        return read_rows(self.lm, layer)
