"""Read neuron activations with a forward pass that stops after the last layer it needs.

A forward pre-hook on each wanted layer's MLP output projection copies its input (the neurons).
When the hook of the deepest wanted layer fires, it raises `_StopForward`: no later layer, no
final norm and no LM head is computed. This is architecture-agnostic and costs nothing extra.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from neuron2graph.models.loading import LoadedModel

UnitTransform = Callable[[Float[Tensor, "batch pos d_mlp"]], Float[Tensor, "batch pos units"]]
"""Maps a layer's neurons to the units studied (identity for neurons; an SAE encoder)."""


class _StopForward(Exception):
    pass


@torch.inference_mode()
def layer_activations(
    lm: LoadedModel,
    input_ids: Int[Tensor, "batch pos"],
    layers: Sequence[int],
    *,
    attention_mask: Int[Tensor, "batch pos"] | None = None,
    neurons: dict[int, Tensor] | None = None,
    transform: dict[int, UnitTransform] | None = None,
) -> dict[int, Float[Tensor, "batch pos units"]]:
    """Return `{layer: activations}` for the given layers, running the model only as deep as needed.

    `neurons` optionally selects a subset of units per layer (an index tensor), which saves memory
    when only a few neurons are studied. Padding must be on the right: the model is causal, so
    right padding never changes the activations of real tokens.
    """
    if not layers:
        return {}
    for layer in layers:
        lm.check_neuron(layer)
    for layer, index in (neurons or {}).items():
        if index.numel() and not (transform and layer in transform):  # SAE units: other range
            lm.check_neuron(layer, int(index.min()))
            lm.check_neuron(layer, int(index.max()))
    wanted = sorted(set(layers))
    deepest = wanted[-1]
    out: dict[int, Tensor] = {}
    handles = []

    def make_hook(layer: int) -> Callable[..., Any]:
        def hook(_module: Any, args: tuple[Any, ...]) -> None:
            acts = args[0]
            if acts.dim() == 2:  # OPT flattens (batch, pos) before its MLP
                acts = acts.reshape(*input_ids.shape, acts.shape[-1])
            if transform and layer in transform:
                acts = transform[layer](acts)
            if neurons is not None and layer in neurons:
                acts = acts.index_select(-1, neurons[layer].to(acts.device))
            out[layer] = acts.float()
            if layer == deepest:
                raise _StopForward

        return hook

    for layer in wanted:
        module = lm.sites.mlp_out(lm.layer_modules[layer])
        handles.append(module.register_forward_pre_hook(make_hook(layer)))
    try:
        lm.model(
            input_ids=input_ids.to(lm.device),
            attention_mask=None if attention_mask is None else attention_mask.to(lm.device),
            use_cache=False,
        )
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return out


def pad_batch(
    sequences: Sequence[Sequence[int]], pad_id: int
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """Right-pad token sequences into (input_ids, attention_mask)."""
    width = max((len(s) for s in sequences), default=0)
    ids = torch.full((len(sequences), max(width, 1)), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, seq in enumerate(sequences):
        ids[i, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[i, : len(seq)] = 1
    return ids, mask


def neuron_activations(
    lm: LoadedModel,
    sequences: Sequence[Sequence[int]],
    layer: int,
    neuron_ids: Sequence[int],
    *,
    batch_size: int = 64,
) -> list[Float[Tensor, "pos n"]]:
    """Activations of a few neurons of one layer on variable-length token sequences.

    Sequences are sorted by length and batched with right padding (less padding, same results);
    the result is in input order, one `[len(seq), len(neuron_ids)]` tensor per sequence.
    """
    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer is not None else 0
    pad_id = 0 if pad_id is None else int(pad_id)
    index = torch.as_tensor(list(neuron_ids), dtype=torch.long)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    results: list[Tensor | None] = [None] * len(sequences)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        ids, mask = pad_batch([sequences[i] for i in chunk], pad_id)
        acts = layer_activations(lm, ids, [layer], attention_mask=mask, neurons={layer: index})
        acts_cpu = acts[layer].cpu()
        for row, i in enumerate(chunk):
            results[i] = acts_cpu[row, : len(sequences[i])]
    return [r if r is not None else torch.zeros(0, len(index)) for r in results]
