"""Decode neurons through the LM head: what each neuron promotes, suppresses and reads.

`decode_layer` gives, for every neuron of a layer, the top-k tokens of its write direction
(promote), the bottom-k (suppress), and the top-k of its read rows (read; read_gate for gated
MLPs). `find_neurons` inverts the question: which neurons, in any layer, most promote one token.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from neuron2graph.decode.topk import DEFAULT_NEURON_CHUNK, DEFAULT_VOCAB_CHUNK, TopK, chunked_topk
from neuron2graph.decode.weights import FinalNorm, neuron_directions, unembedding
from neuron2graph.errors import N2GError
from neuron2graph.models.loading import LoadedModel
from neuron2graph.tokens import token_piece, token_pieces
from neuron2graph.units.registry import make_source
from neuron2graph.units.source import ActivationSource

KINDS = ("promote", "suppress", "read", "read_gate")
"""promote/suppress: the write direction's top and bottom tokens; read: the input projection
row's top tokens (up_proj, c_fc, dense_h_to_4h, fc1); read_gate: the gate row's (gated only)."""


@dataclass
class LayerDecode:
    """Decoded tokens of every neuron of one layer, keyed by kind (see `KINDS`)."""

    layer: int
    top: int
    kinds: dict[str, TopK] = field(default_factory=dict)

    @property
    def n_neurons(self) -> int:
        return int(next(iter(self.kinds.values())).ids.shape[0])

    def neuron(self, neuron: int, tokenizer: Any = None) -> dict[str, list[dict[str, Any]]]:
        """One neuron's decoded tokens as `{kind: [{rank, token_id, token?, logit}, ...]}`."""
        out: dict[str, list[dict[str, Any]]] = {}
        for kind, tk in self.kinds.items():
            rows = []
            for rank, (tid, val) in enumerate(
                zip(tk.ids[neuron].tolist(), tk.values[neuron].tolist(), strict=True)
            ):
                row: dict[str, Any] = {"rank": rank, "token_id": tid, "logit": float(val)}
                if tokenizer is not None:
                    row["token"] = token_piece(tokenizer, tid)
                rows.append(row)
            out[kind] = rows
        return out


def _subset(dirs: Tensor, pick: Tensor | None) -> Tensor:
    return dirs if pick is None else dirs.index_select(0, pick.to(dirs.device))


def decode_layer(
    lm: LoadedModel,
    layer: int,
    *,
    top: int = 10,
    neuron_chunk: int = DEFAULT_NEURON_CHUNK,
    vocab_chunk: int = DEFAULT_VOCAB_CHUNK,
    kinds: Sequence[str] = KINDS,
    norm: FinalNorm | None = None,
    neurons: Sequence[int] | None = None,
    source: ActivationSource | None = None,
) -> LayerDecode:
    """Decode every unit of `layer` (or only `neurons`, in that order; row i of each result is
    then `neurons[i]`). Memory stays at one `[neuron_chunk, vocab_chunk]` block. `source` gives
    the units' directions (default: the MLP neurons of `lm`)."""
    source = source or make_source("neurons", lm)
    source.check(layer)
    for n in neurons or ():
        source.check(layer, n)
    pick = None if neurons is None else torch.tensor(list(neurons), dtype=torch.long)
    if top < 1:
        raise N2GError(f"--top must be at least 1, got {top}")
    norm = norm or FinalNorm(lm)
    unembed = unembedding(lm)
    result = LayerDecode(layer=layer, top=top)
    if "promote" in kinds or "suppress" in kinds:
        dirs = _subset(neuron_directions(lm, layer, "write", norm, source), pick)
        best, worst = chunked_topk(dirs, unembed, top, bottom="suppress" in kinds,
                                   neuron_chunk=neuron_chunk, vocab_chunk=vocab_chunk)
        if "promote" in kinds:
            result.kinds["promote"] = best
        if worst is not None:
            result.kinds["suppress"] = worst
    readable = any(k in kinds for k in ("read", "read_gate"))
    try:
        gated = readable and source.input_directions(layer)[1] is not None
    except N2GError:  # e.g. a coder reading MLP neurons: no residual read side
        readable = gated = False
    for side in ("read", "read_gate"):
        if side in kinds and readable and (side == "read" or gated):
            dirs = _subset(neuron_directions(lm, layer, side, norm, source), pick)
            result.kinds[side] = chunked_topk(
                dirs, unembed, top, neuron_chunk=neuron_chunk, vocab_chunk=vocab_chunk
            )[0]
    return result


def decode_model(
    lm: LoadedModel,
    layers: Sequence[int] | None = None,
    *,
    top: int = 10,
    neuron_chunk: int = DEFAULT_NEURON_CHUNK,
    vocab_chunk: int = DEFAULT_VOCAB_CHUNK,
    kinds: Sequence[str] = KINDS,
    progress: bool = True,
    source: ActivationSource | None = None,
) -> Iterator[LayerDecode]:
    """Decode the given layers (all by default), one layer at a time, with a progress bar."""
    from tqdm import tqdm

    source = source or make_source("neurons", lm)
    layers = source.layers() if layers is None else list(layers)
    for layer in layers:
        source.check(layer)
    norm = FinalNorm(lm)
    bar = tqdm(layers, desc="decode", unit="layer", disable=not progress, leave=False)
    for layer in bar:
        yield decode_layer(
            lm, layer, top=top, neuron_chunk=neuron_chunk, vocab_chunk=vocab_chunk, kinds=kinds,
            norm=norm, source=source,
        )


def single_token_id(tokenizer: Any, text: str) -> int:
    """The id of `text` if it is exactly one token; else a one-line error saying how it splits."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        pieces = token_pieces(tokenizer, ids)
        raise N2GError(
            f"{text!r} is not a single token: it tokenises as {pieces} (ids {ids}); pass one "
            "token, e.g. with or without a leading space"
        )
    return int(ids[0])


@torch.inference_mode()
def neuron_logits(
    lm: LoadedModel, layer: int, neuron: int, source: ActivationSource | None = None
) -> Float[Tensor, " vocab"]:
    """Full-vocabulary logits of one unit's write direction (float32, on the CPU)."""
    source = source or make_source("neurons", lm)
    source.check(layer, neuron)
    direction = neuron_directions(lm, layer, "write", source=source)[neuron]
    return (unembedding(lm) @ direction).float().cpu()


BY = ("zscore", "logit")


@torch.inference_mode()
def find_neurons(
    lm: LoadedModel,
    token_id: int,
    *,
    top: int = 20,
    layers: Sequence[int] | None = None,
    by: str = "zscore",
    context: int = 5,
    source: ActivationSource | None = None,
) -> list[dict[str, Any]]:
    """The neurons whose write direction most promotes `token_id`, across `layers` (default all).

    `logit` is `unembed[token] . (gain * w_out)`: the neuron's direct effect on the token's logit
    per unit of activation. Ranking by it favours neurons with huge weights that push thousands
    of tokens at once, so the default ranks by `zscore`: how far the token's logit stands above
    the neuron's mean logit over the vocabulary, in standard deviations of those logits. Both
    moments come in closed form from the unembedding's mean row and covariance (`d x d`), so
    the search stays one matrix-vector product per layer. Each hit also carries the token's
    rank among everything that neuron promotes (0 = its top token) and its own top tokens.
    """
    if by not in BY:
        raise N2GError(f"unknown ranking {by!r}: use one of {', '.join(BY)}")
    source = source or make_source("neurons", lm)
    layers = source.layers() if layers is None else list(layers)
    unembed = unembedding(lm)
    if not 0 <= token_id < unembed.shape[0]:
        raise N2GError(
            f"token id {token_id} is out of range: the vocabulary has {unembed.shape[0]} tokens"
        )
    norm = FinalNorm(lm)
    u = unembed[token_id].float()
    mean_row = unembed.float().mean(dim=0)
    centred = unembed.float() - mean_row
    cov = centred.T @ centred / unembed.shape[0]  # [d, d]
    logits, zscores = [], []
    for layer in layers:
        source.check(layer)
        dirs = neuron_directions(lm, layer, "write", norm, source).float()
        logit = dirs @ u
        std = ((dirs @ cov) * dirs).sum(-1).clamp_min(1e-30).sqrt()
        logits.append(logit.cpu())
        zscores.append(((logit - dirs @ mean_row) / std).cpu())
    flat_logit, flat_z = torch.stack(logits), torch.stack(zscores)  # [layers, neurons]: small
    score = flat_z if by == "zscore" else flat_logit
    _, pos = torch.topk(score.reshape(-1), min(top, score.numel()))
    n = score.shape[1]
    hits = []
    for p in pos.tolist():
        layer, neuron = layers[p // n], p % n
        full = neuron_logits(lm, layer, neuron, source)
        rank = int((full > full[token_id]).sum())
        best = torch.topk(full, context).indices.tolist()
        hits.append({
            "layer": layer, "neuron": neuron, "logit": float(flat_logit[p // n, neuron]),
            "zscore": float(flat_z[p // n, neuron]), "rank": rank,
            "top_tokens": token_pieces(lm.tokenizer, best) if lm.tokenizer is not None else best,
        })
    return hits
