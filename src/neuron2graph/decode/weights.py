"""Neuron weight directions in residual-stream space, per architecture.

A neuron *writes* the column of the MLP output projection for its coordinate into the residual
stream, and *reads* the residual stream through one row of the input projection (and one row of
the gate projection in gated MLPs). We return both as `[n_neurons, d_model]` matrices so that one
matrix product with the unembedding decodes a whole chunk of neurons at once.

Layouts differ: `nn.Linear` stores `[out, in]`, GPT-2's `Conv1D` stores `[in, out]`. Both
projections are found through the one architecture registry (`models/sites.py`: `lm.sites.mlp_out`
and `lm.sites.read_rows`), so adding a family is one `register_architecture` call. Unit sources
(`units/`) hand out these directions per unit kind (`output_directions`/`input_directions`).

Final norm (why we scale by the gain and centre for LayerNorm): the unembedding reads the residual
stream *after* the final norm. The norm's input-dependent scale (1/rms or 1/std) is one positive
number per position, the same for every token, so it changes no ranking and we drop it. Its gain
is per-dimension and does change rankings, so directions are multiplied by it (Gemma's RMSNorm
multiplies by `1 + weight`, which we honour). LayerNorm also subtracts the mean over `d_model`,
which is linear, so we apply it exactly (centre each direction). LayerNorm's bias and any LM-head
bias add the same vector to every neuron's logits; they are not the neuron's doing and are left
out. The logits we report are therefore the neuron's direct effect on the logits per unit of
activation, up to the final norm's positive scale.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn

from neuron2graph.errors import N2GError
from neuron2graph.models.loading import LoadedModel
from neuron2graph.units.registry import make_source
from neuron2graph.units.source import ActivationSource


def model_type(lm: LoadedModel) -> str:
    return str(getattr(getattr(lm.model, "config", None), "model_type", ""))


def is_gated(lm: LoadedModel) -> bool:
    return read_rows(lm, 0)[1] is not None


def read_rows(lm: LoadedModel, layer: int) -> tuple[Tensor, Tensor | None]:
    """The raw input (and gate) projection rows of `layer`, `[n_neurons, d_model]` each."""
    return lm.sites.read_rows(lm.layer_modules[layer])


def write_columns(lm: LoadedModel, layer: int) -> Float[Tensor, "neurons d_model"]:
    """The raw output-projection columns of `layer`, one row per neuron."""
    out = lm.sites.mlp_out(lm.layer_modules[layer])
    weight: Tensor = out.weight.detach()  # type: ignore[operator,assignment]
    return weight if type(out).__name__ == "Conv1D" else weight.T


class FinalNorm:
    """The linear part of the final norm that the unembedding sees: centring and gain."""

    def __init__(self, lm: LoadedModel) -> None:
        norm = lm.sites.final_norm(lm.model)
        name = type(norm).__name__ if norm is not None else "none"
        weight = getattr(norm, "weight", None) if norm is not None else None
        gain: Tensor | None = None
        if isinstance(weight, Tensor):
            gain = weight.detach().float()
            if "Gemma" in name:  # Gemma's RMSNorm computes x * (1 + weight)
                gain = gain + 1.0
        self.gain = gain
        self.centre = norm is not None and "LayerNorm" in name and "RMS" not in name
        self.kind = name
        # OPT-350m projects the normed residual down before its LM head.
        decoder = getattr(getattr(lm.model, "model", None), "decoder", None)
        project_out = getattr(decoder, "project_out", None)
        self.project: Tensor | None = (
            project_out.weight.detach().float() if isinstance(project_out, nn.Linear) else None
        )

    def describe(self) -> str:
        parts = [self.kind]
        if self.centre:
            parts.append("mean-centred")
        parts.append("gain applied" if self.gain is not None else "no gain")
        return ", ".join(parts)

    def __call__(
        self, directions: Float[Tensor, "n d_model"], dtype: torch.dtype
    ) -> Float[Tensor, "n d_out"]:
        x = directions.float()
        if self.centre:
            x = x - x.mean(dim=-1, keepdim=True)
        if self.gain is not None:
            x = x * self.gain.to(x.device)
        if self.project is not None:
            x = x @ self.project.to(x.device).T
        return x.to(dtype)


def unembedding(lm: LoadedModel) -> Float[Tensor, "vocab d_model"]:
    """The unembedding matrix `[vocab, d_model]` (the LM head's weight)."""
    head = lm.model.get_output_embeddings()  # type: ignore[operator,assignment]
    if head is None or not isinstance(getattr(head, "weight", None), Tensor):
        raise N2GError(f"{lm.spec} has no LM head to decode through: use a causal LM model")
    return head.weight.detach()  # type: ignore[no-any-return]


def neuron_directions(
    lm: LoadedModel, layer: int, side: str, norm: FinalNorm | None = None,
    source: ActivationSource | None = None,
) -> Float[Tensor, "neurons d_model"]:
    """Norm-scaled directions of `layer` for `side` in {"write", "read", "read_gate"}.

    The raw directions come from the unit source (`output_directions`/`input_directions`;
    default: the MLP neurons of `lm`). Read rows get the final norm's linear part too, as in the
    paper (it passes weights through the final norm then the LM head): it makes read and write
    sides comparable token-wise.
    """
    norm = norm or FinalNorm(lm)
    source = source or make_source("neurons", lm)
    if side == "write":
        raw = source.output_directions(layer)
    else:
        up, gate = source.input_directions(layer)
        if side == "read_gate" and gate is None:
            raise N2GError(f"{lm.spec} has no gated MLP: there is no read_gate side")
        raw = up if side == "read" else gate  # type: ignore[assignment]
    return norm(raw, unembedding(lm).dtype)
