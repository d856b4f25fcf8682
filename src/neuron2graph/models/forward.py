"""Read neuron activations with a forward pass that stops after the last layer it needs.

The neurons are the `mlp_post` hook point (the input of each wanted layer's MLP output
projection, see `models/hooks.py`). When the deepest wanted layer has been read the forward
stops: no later layer, no final norm and no LM head is computed. Other unit kinds (SAE latents)
read other points through `hooks.capture` directly; see `units/`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from neuron2graph.models.hooks import capture
from neuron2graph.models.loading import LoadedModel


@torch.inference_mode()
def layer_activations(
    lm: LoadedModel,
    input_ids: Int[Tensor, "batch pos"],
    layers: Sequence[int],
    *,
    attention_mask: Int[Tensor, "batch pos"] | None = None,
    neurons: dict[int, Tensor] | None = None,
    cache: Any = None,
) -> dict[int, Float[Tensor, "batch pos units"]]:
    """Return `{layer: activations}` for the given layers, running the model only as deep as needed.

    `cache`: a KV cache filled by (and continued from) the forward, see `hooks.capture`.

    `neurons` optionally selects a subset of units per layer (an index tensor), which saves memory
    when only a few neurons are studied. Padding must be on the right: the model is causal, so
    right padding never changes the activations of real tokens.
    """
    if not layers:
        return {}
    for layer in layers:
        lm.check_neuron(layer)
    for layer, index in (neurons or {}).items():
        if index.numel():
            lm.check_neuron(layer, int(index.min()))
            lm.check_neuron(layer, int(index.max()))

    def pick(index: Tensor) -> Callable[[Tensor], Tensor]:
        return lambda acts: acts.index_select(-1, index.to(acts.device)).float()

    transform = {
        (layer, "mlp_post"): pick(neurons[layer]) if neurons and layer in neurons
        else (lambda acts: acts.float())
        for layer in set(layers)
    }
    got = capture(lm, input_ids, [(layer, "mlp_post") for layer in sorted(set(layers))],
                  attention_mask=attention_mask, transform=transform,  # type: ignore[arg-type]
                  cache=cache)
    return {layer: acts for (layer, _), acts in got.items()}


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
