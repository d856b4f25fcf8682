"""Where an SAE reads and writes: hook names of SAELens (TransformerLens form) and sparsify.

A *site* is one of `resid_pre`, `mlp_in`, `mlp_post`, `mlp_out`, `resid_post` of a layer. SAELens
names sites the TransformerLens way (`blocks.6.hook_mlp_out`); sparsify names the Hugging Face
module whose output it autoencodes, relative to the base model (`layers.6.mlp`, `h.6`). Both are
mapped to `(layer, site)` here so the rest of the package never sees either spelling.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from neuron2graph.errors import N2GError

SITES = ("resid_pre", "mlp_in", "mlp_post", "mlp_out", "resid_post")

_TL_SUFFIXES = {
    "hook_resid_pre": "resid_pre",
    "hook_resid_post": "resid_post",
    "hook_mlp_out": "mlp_out",
    "mlp.hook_post": "mlp_post",
    "hook_mlp_in": "mlp_in",
    "ln2.hook_normalized": "mlp_in",
}
_MLP_OUT_PROJ = ("down_proj", "c_proj", "dense_4h_to_h", "fc2")


@dataclass(frozen=True)
class HookPoint:
    """One site of one layer (`site` is one of SITES)."""

    layer: int
    site: str

    def __str__(self) -> str:
        return f"{self.site}@{self.layer}"


def parse_tl_hook(name: str) -> HookPoint:
    """`blocks.L.hook_mlp_out` -> HookPoint(L, "mlp_out"); any other name is a one-line error."""
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)", name.strip())
    if m is None or m.group(2) not in _TL_SUFFIXES:
        known = ", ".join(f"blocks.L.{s}" for s in _TL_SUFFIXES)
        raise N2GError(f"unknown hook name {name!r}: neuron2graph reads SAEs at {known}")
    return HookPoint(int(m.group(1)), _TL_SUFFIXES[m.group(2)])


def parse_sparsify_hookpoint(name: str, *, transcode: bool) -> tuple[HookPoint, HookPoint]:
    """A sparsify module path -> (where the coder reads, where it writes).

    `layers.L` autoencodes the layer output (resid_post); `layers.L.mlp` the MLP output, or, for a
    transcoder, reads the MLP input and predicts its output. The container name before `L`
    (`layers`, `h`, `decoder.layers`) is not checked here: the layer count check catches a
    checkpoint of another architecture.
    """
    parts = name.strip().split(".")
    idx = next((i for i, p in enumerate(parts) if p.isdigit()), None)
    if idx is None:
        raise N2GError(
            f"unknown sparsify hookpoint {name!r}: expected a layer path such as layers.6 or "
            "layers.6.mlp"
        )
    layer = int(parts[idx])
    rest = ".".join(parts[idx + 1 :])
    if rest == "" and not transcode:
        return HookPoint(layer, "resid_post"), HookPoint(layer, "resid_post")
    if rest == "mlp" or (rest in _MLP_OUT_PROJ and not transcode):
        if transcode:
            return HookPoint(layer, "mlp_in"), HookPoint(layer, "mlp_out")
        return HookPoint(layer, "mlp_out"), HookPoint(layer, "mlp_out")
    kind = "transcoder" if transcode else "SAE"
    raise N2GError(
        f"unsupported sparsify hookpoint {name!r} for a {kind}: neuron2graph reads "
        "layers.L (residual stream) and layers.L.mlp (MLP output, or MLP input->output for "
        "transcoders)"
    )


def sparsify_hookpoint(layers_path: str, layer: int, site: str) -> str:
    """The sparsify module path for training at `site` ("transcoder" reads the MLP)."""
    if site == "resid_post":
        return f"{layers_path}.{layer}"
    if site in ("mlp_out", "transcoder"):
        return f"{layers_path}.{layer}.mlp"
    raise N2GError(f"--site {site!r} cannot be trained: use mlp_out, resid_post or transcoder")
