"""SAE and transcoder latents as units (`--units sae:PATH`, PATH a SAELens or sparsify folder).

One coder per layer (a sparsify run folder may hold several). Activations are read at the
coder's input hook point with the one truncated forward of `models.hooks.capture`; the encoder
runs inside the hook, so the full-width input is never kept. When a stage asks for a few latents
(`units`), only those encoder columns are computed, except for TopK coders, whose selection
needs every latent's pre-activation. Output direction of a latent = its decoder row (carried
through the MLP output projection when the coder writes `mlp_post`); input direction = its
encoder column.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from jaxtyping import Float, Int
from torch import Tensor

from neuron2graph.decode.weights import write_columns
from neuron2graph.errors import N2GError
from neuron2graph.ids import UnitId
from neuron2graph.models.hooks import capture
from neuron2graph.models.loading import LoadedModel
from neuron2graph.sae.loading import check_against_model, load_saes
from neuron2graph.sae.model import Sae
from neuron2graph.units.source import ActivationSource


class SaeLatents(ActivationSource):
    """The latents of one coder per layer; `path` is what `sae:PATH` named."""

    kind = "sae"
    site = "sae"
    sparse = True  # few latents fire per token: record keeps only the sample's nonzeros
    supports_cache = True

    def __init__(self, lm: LoadedModel, path: str, saes: Sequence[Sae] | None = None) -> None:
        super().__init__(lm)
        self.path = path
        coders = list(saes) if saes is not None else load_saes(path)
        self.saes = {s.info.layer: s.to(lm.device) for s in coders}
        for sae in self.saes.values():
            width = _width(lm, sae)
            check_against_model(sae, lm, width)

    @property
    def spec(self) -> str:
        return f"sae:{self.path}"

    @property
    def noun(self) -> str:
        return "latent"

    def describe(self) -> str:
        return f"{self.lm.spec} + SAE {self.path}"

    def layers(self) -> list[int]:
        return sorted(self.saes)

    def n_units(self, layer: int) -> int:
        self.check(layer)
        return self.saes[layer].d_sae

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
        transforms = {}
        for layer in set(layers):
            sae = self.saes[layer]
            index = None if units is None else units.get(layer)
            transforms[(layer, sae.info.reads.site)] = _encoder(sae, index)
        got = capture(self.lm, input_ids, list(transforms),  # type: ignore[arg-type]
                      attention_mask=attention_mask, transform=transforms,  # type: ignore[arg-type]
                      cache=cache)
        return {layer: got[(layer, self.saes[layer].info.reads.site)].float()  # type: ignore[index]
                for layer in set(layers)}

    def clamped(self, unit: UnitId, value: float) -> AbstractContextManager[None]:
        """Steer: `value * W_dec[i]` is added at the coder's write site at every position.

        A latent has no coordinate of its own in the model to overwrite (the model never runs
        the coder), so "clamping" it means adding its decoder direction, scaled, where the
        coder would write: the reconstruction as if the latent fired `value` more."""
        from neuron2graph.sae.sites import added_at

        self.check(unit)
        sae = self.saes[unit.layer]
        return added_at(self.lm, sae.info.writes, value * sae.W_dec[unit.index].detach())

    def output_directions(self, layer: int) -> Float[Tensor, "units d_model"]:
        self.check(layer)
        sae = self.saes[layer]
        if sae.info.writes.site == "mlp_post":
            return sae.W_dec @ write_columns(self.lm, layer).float().to(sae.W_dec.device)
        return sae.W_dec

    def input_directions(self, layer: int) -> tuple[Tensor, Tensor | None]:
        self.check(layer)
        sae = self.saes[layer]
        if sae.info.reads.site == "mlp_post":
            raise N2GError(f"the SAE at layer {layer} reads MLP neurons: it has no residual "
                           "read direction (decode its write side)")
        return sae.W_enc.T, None


def _encoder(sae: Sae, index: Tensor | None):  # type: ignore[no-untyped-def]
    if index is None:
        return sae.encode
    index = index.to(sae.W_enc.device)
    if sae.info.architecture == "topk":
        return lambda x: sae.encode(x).index_select(-1, index)
    sub_enc, sub_b = sae.W_enc[:, index], sae.b_enc[index]
    sub_thr = sae.threshold[index] if sae.info.architecture == "jumprelu" else None

    def encode(x: Tensor) -> Tensor:
        x = x.float()
        if sae.info.apply_b_dec_to_input:
            x = x - sae.b_dec
        pre = x @ sub_enc + sub_b
        return pre * (pre > sub_thr) if sub_thr is not None else pre.clamp_min(0)

    return encode


def _width(lm: LoadedModel, sae: Sae) -> int:
    import torch

    key = (sae.info.layer, sae.info.reads.site)
    if not 0 <= sae.info.layer < lm.n_layers:
        return -1  # check_against_model names the layer mismatch
    ids = torch.zeros((1, 2), dtype=torch.long)
    return int(capture(lm, ids, [key])[key].shape[-1])  # type: ignore[list-item,index]


def make_sae_source(lm: LoadedModel, arg: str) -> SaeLatents:
    if not arg:
        raise N2GError("unit spec 'sae' needs a folder: write sae:PATH")
    if not Path(arg).expanduser().exists():
        raise N2GError(f"no SAE folder {arg!r}: pass sae:PATH with a SAELens or sparsify folder")
    return SaeLatents(lm, arg)
