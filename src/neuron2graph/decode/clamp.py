"""Clamp a unit to a value and watch what the model does: the causal check of a decoding.

The unit source does the clamping (`ActivationSource.clamped`): for MLP neurons a forward
pre-hook on the layer's MLP output projection overwrites the neuron's coordinate of its input
with `value` at every position (prompt and generated tokens alike). We report the next-token
probability of concept tokens with and without the clamp, and greedy generations.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from neuron2graph.errors import N2GError
from neuron2graph.ids import UnitId
from neuron2graph.models.loading import LoadedModel
from neuron2graph.tokens import token_piece
from neuron2graph.units.registry import make_source
from neuron2graph.units.source import ActivationSource


@contextmanager
def clamped(
    lm: LoadedModel, layer: int, neuron: int, value: float,
    source: ActivationSource | None = None,
) -> Iterator[None]:
    """Within the block, unit `layer:neuron` reads `value` at every position."""
    source = source or make_source("neurons", lm)
    with source.clamped(UnitId(layer, neuron, source.site), value):
        yield


@torch.inference_mode()
def next_token_logits(
    lm: LoadedModel, input_ids: Int[Tensor, "1 pos"]
) -> Float[Tensor, " vocab"]:
    out = lm.model(input_ids=input_ids.to(lm.device), use_cache=False)
    return out.logits[0, -1].float().cpu()  # type: ignore[no-any-return]


@torch.inference_mode()
def greedy(lm: LoadedModel, input_ids: Int[Tensor, "1 pos"], max_new_tokens: int) -> list[int]:
    """Greedy continuation, one full forward per step (no cache: short texts, exact hooks)."""
    ids = input_ids.to(lm.device)
    new: list[int] = []
    eos = getattr(lm.tokenizer, "eos_token_id", None)
    for _ in range(max_new_tokens):
        nxt = int(lm.model(input_ids=ids, use_cache=False).logits[0, -1].argmax())
        new.append(nxt)
        if eos is not None and nxt == eos:
            break
        ids = torch.cat([ids, torch.tensor([[nxt]], device=ids.device)], dim=1)
    return new


@dataclass
class ConceptShift:
    token: str
    token_id: int
    p_base: float
    p_clamped: float

    @property
    def ratio(self) -> float:
        return self.p_clamped / self.p_base if self.p_base > 0 else float("inf")


@dataclass
class ClampReport:
    layer: int
    neuron: int
    value: float
    prompt: str
    concepts: list[ConceptShift]
    concept_mass_base: float
    concept_mass_clamped: float
    text_base: str
    text_clamped: str
    top_base: list[str]
    top_clamped: list[str]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for c, raw in zip(self.concepts, d["concepts"], strict=True):
            raw["ratio"] = c.ratio
            raw["delta"] = c.p_clamped - c.p_base
        return d


def encode_prompt(lm: LoadedModel, prompt: str) -> Int[Tensor, "1 pos"]:
    if not prompt.strip():
        raise N2GError("the prompt is empty: pass some text with --prompt")
    ids = lm.tokenizer(prompt, return_tensors="pt")["input_ids"]
    return ids  # type: ignore[no-any-return]


def clamp_report(
    lm: LoadedModel,
    layer: int,
    neuron: int,
    value: float,
    prompt: str,
    concept_ids: Sequence[int],
    *,
    max_new_tokens: int = 20,
    show_top: int = 5,
    source: ActivationSource | None = None,
) -> ClampReport:
    """Probabilities of `concept_ids` at the next position, and generations, with and without."""
    source = source or make_source("neurons", lm)
    source.check(layer, neuron)
    ids = encode_prompt(lm, prompt)
    base = next_token_logits(lm, ids).softmax(-1)
    base_text = greedy(lm, ids, max_new_tokens)
    with clamped(lm, layer, neuron, value, source):
        clamp = next_token_logits(lm, ids).softmax(-1)
        clamp_text = greedy(lm, ids, max_new_tokens)
    tok = lm.tokenizer
    concepts = [
        ConceptShift(token_piece(tok, t), int(t), float(base[t]), float(clamp[t]))
        for t in concept_ids
    ]
    unique = sorted(set(int(t) for t in concept_ids))
    return ClampReport(
        layer=layer, neuron=neuron, value=value, prompt=prompt, concepts=concepts,
        concept_mass_base=float(base[unique].sum()),
        concept_mass_clamped=float(clamp[unique].sum()),
        text_base=tok.decode(base_text), text_clamped=tok.decode(clamp_text),
        top_base=[token_piece(tok, int(t)) for t in base.topk(show_top).indices],
        top_clamped=[token_piece(tok, int(t)) for t in clamp.topk(show_top).indices],
    )
