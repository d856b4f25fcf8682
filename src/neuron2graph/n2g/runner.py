"""Batched, truncated, metered model forwards shared by all neurons of one layer.

Every forward of the N2G pipeline goes through a `LayerRunner`: requests from many neurons are
deduplicated, sorted by length and run in right-padded batches that stop after the neuron's layer,
reading all the requested neurons of that layer in one pass. The runner also keeps the books: for
every neuron it counts model token-layers (real tokens x layers run; padded ones separately) and
the seconds spent inside model forwards, shared out in proportion to each neuron's tokens.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from neuron2graph.models.forward import layer_activations, pad_batch
from neuron2graph.models.loading import LoadedModel
from neuron2graph.n2g.saliency import MEAN_EMBEDDING


@dataclass
class Meter:
    """Model work attributed to one neuron."""

    token_layers: float = 0.0
    padded_token_layers: float = 0.0
    forward_seconds: float = 0.0
    forward_rows: float = 0.0
    by_stage: dict[str, float] = field(default_factory=dict)
    """Token-layers per pipeline stage (prune, saliency, augment ...)."""


def _batches(lengths: Sequence[int], max_tokens: int, max_rows: int) -> Iterator[list[int]]:
    """Indices (already sorted by length) grouped so that rows x width stays under max_tokens."""
    batch: list[int] = []
    for i, n in enumerate(lengths):
        width = max(n, lengths[batch[0]] if batch else 0)
        if batch and ((len(batch) + 1) * width > max_tokens or len(batch) >= max_rows):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


class LayerRunner:
    """Runs token sequences for the neurons `neuron_ids` of `layer`, one column per neuron."""

    def __init__(
        self,
        lm: LoadedModel,
        layer: int,
        neuron_ids: Sequence[int],
        *,
        max_batch_tokens: int = 8192,
        max_rows: int = 256,
    ) -> None:
        lm.check_neuron(layer)
        for n in neuron_ids:
            lm.check_neuron(layer, n)
        self.lm = lm
        self.layer = layer
        self.index = torch.as_tensor(list(neuron_ids), dtype=torch.long)
        self.meters = [Meter() for _ in neuron_ids]
        self.max_batch_tokens = max_batch_tokens
        self.max_rows = max_rows
        pad = getattr(lm.tokenizer, "pad_token_id", None)
        self.pad_id = int(pad) if pad is not None else 0
        self._shared: list[float] | None = None
        self.stage = "forward"
        """Label under which forwards are booked in `Meter.by_stage` (set by the pipeline)."""

    # ------------------------------------------------------------- accounting
    def _charge(self, owners: list[list[int]], tokens: list[int], width: int, depth: int,
                seconds: float) -> None:
        total = sum(tokens) or 1
        for own, n in zip(owners, tokens, strict=True):
            if self._shared is not None:  # work on behalf of several neurons at once
                weights = self._shared
                share_to = [(c, w) for c, w in enumerate(weights) if w > 0]
                norm = sum(w for _c, w in share_to) or 1.0
                split = [(c, w / norm) for c, w in share_to]
            else:
                split = [(c, 1.0 / len(own)) for c in own]
            for col, frac in split:
                meter = self.meters[col]
                meter.token_layers += frac * n * depth
                meter.padded_token_layers += frac * width * depth
                meter.forward_seconds += frac * seconds * n / total
                meter.forward_rows += frac
                meter.by_stage[self.stage] = meter.by_stage.get(self.stage, 0.0) + frac * n * depth

    @contextmanager
    def shared(self, weights: Sequence[float]) -> Iterator[None]:
        """Charge forwards run inside the block to neurons in proportion to `weights`."""
        self._shared = [float(w) for w in weights]
        try:
            yield
        finally:
            self._shared = None

    @contextmanager
    def _mean_embedding(self, ids: Int[Tensor, "batch pos"]) -> Iterator[Tensor]:
        """Positions holding `MEAN_EMBEDDING` get the mean of all input embeddings (a mask that is
        no token at all); a hook on the embedding module swaps them in, for any architecture."""
        special = ids == MEAN_EMBEDDING
        if not bool(special.any()):
            yield ids
            return
        model: Any = self.lm.model
        emb: Any = model.get_input_embeddings()
        mean: Tensor = emb.weight.detach().mean(0)

        def hook(_module: object, _args: object, output: Tensor) -> Tensor:
            where = special.to(output.device)[..., None]
            return torch.where(where, mean.to(output.device, output.dtype), output)

        handle = emb.register_forward_hook(hook)
        try:
            yield ids.masked_fill(special, self.pad_id)
        finally:
            handle.remove()

    # ------------------------------------------------------------- forwards
    def acts(self, sequences: Sequence[Sequence[int]], owners: Sequence[int]) -> list[list[float]]:
        """Activation of neuron column `owners[i]` on every token of `sequences[i]`."""
        unique: dict[tuple[int, ...], list[int]] = {}
        for seq, col in zip(sequences, owners, strict=True):
            unique.setdefault(tuple(seq), []).append(col)
        keys = sorted(unique, key=len)
        results: dict[tuple[int, ...], Tensor] = {}
        lengths = [len(k) for k in keys]
        for batch in _batches(lengths, self.max_batch_tokens, self.max_rows):
            seqs = [keys[i] for i in batch]
            ids, mask = pad_batch(seqs, self.pad_id)
            start = time.perf_counter()
            with self._mean_embedding(ids) as ids:
                out = layer_activations(
                    self.lm, ids, [self.layer], attention_mask=mask,
                    neurons={self.layer: self.index},
                )[self.layer].cpu()
            seconds = time.perf_counter() - start
            self._charge([sorted(set(unique[s])) for s in seqs], [len(s) for s in seqs],
                         ids.shape[1], self.layer + 1, seconds)
            for row, seq in enumerate(seqs):
                results[seq] = out[row, : len(seq)]
        return [results[tuple(seq)][:, col].tolist() for seq, col in zip(sequences, owners,
                                                                          strict=True)]

    @torch.inference_mode()
    def next_tokens(
        self, sequences: Sequence[Sequence[int]], k: int
    ) -> list[tuple[Int[Tensor, "pos k"], Float[Tensor, "pos k"], Float[Tensor, " pos"]]]:
        """Full-depth forwards through the LM head: top-k next tokens and each token's log-prob.

        Charged like `acts` (call it inside `shared(...)` to split the cost between neurons).
        Batches are kept small because logits are [rows, pos, vocab].
        """
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        out: list[tuple[Tensor, Tensor, Tensor] | None] = [None] * len(sequences)
        lengths = [len(sequences[i]) for i in order]
        budget = max(1, min(self.max_batch_tokens, 4_000_000 // max(1, self._vocab())))
        for batch in _batches(lengths, budget * 8, 32):
            idx = [order[i] for i in batch]
            ids, mask = pad_batch([sequences[i] for i in idx], self.pad_id)
            start = time.perf_counter()
            logits = self.lm.model(
                input_ids=ids.to(self.lm.device), attention_mask=mask.to(self.lm.device),
                use_cache=False,
            ).logits.float()
            logp = logits.log_softmax(-1)
            top = logp.topk(k, dim=-1)
            tok = torch.zeros(ids.shape, dtype=torch.float32, device=logp.device)
            tok[:, 1:] = logp[:, :-1].gather(-1, ids[:, 1:, None].to(logp.device))[..., 0]
            seconds = time.perf_counter() - start
            owners = [[0] for _ in idx] if self._shared is None else [[] for _ in idx]
            self._charge(owners, [len(sequences[i]) for i in idx], ids.shape[1],
                         self.lm.n_layers, seconds)
            for row, i in enumerate(idx):
                n = len(sequences[i])
                out[i] = (top.indices[row, :n].cpu(), top.values[row, :n].cpu(),
                          tok[row, :n].cpu())
        return [o for o in out if o is not None]

    @torch.inference_mode()
    def rerank(self, prompt: Sequence[int], k: int, candidates: Sequence[int]) -> list[float]:
        """Log-probability of `prompt` with token k replaced by each candidate, minus the shared
        log-probability of tokens[:k] (a constant, so the ranking is the whole prompt's).

        The prefix runs once and its KV cache is repeated for the candidates, so only the suffix
        from position k is computed per candidate: k + m(n-k) tokens instead of m*n.
        """
        lm = self.lm
        m, n = len(candidates), len(prompt)
        suffix = torch.tensor([[int(c), *prompt[k + 1 :]] for c in candidates], dtype=torch.long,
                              device=lm.device)
        start = time.perf_counter()
        first = torch.zeros(m, device=lm.device)
        if k > 0:
            pre = lm.model(input_ids=torch.tensor([list(prompt[:k])], device=lm.device),
                           use_cache=True)
            cache = pre.past_key_values
            cache.batch_repeat_interleave(m)
            cand = torch.tensor([int(c) for c in candidates], device=lm.device)
            first = pre.logits[0, -1].float().log_softmax(-1)[cand]
            out = lm.model(input_ids=suffix, past_key_values=cache, use_cache=True)
        else:
            out = lm.model(input_ids=suffix, use_cache=False)
        logp = out.logits.float().log_softmax(-1)
        rest = logp[:, :-1].gather(-1, suffix[:, 1:, None])[..., 0].sum(-1)
        scores = (first + rest).cpu().tolist()
        seconds = time.perf_counter() - start
        owners = [[0]] if self._shared is None else [[]]
        self._charge(owners, [k + m * (n - k)], k + m * (n - k), lm.n_layers, seconds)
        return [float(x) for x in scores]

    def _vocab(self) -> int:
        cfg = getattr(self.lm.model, "config", None)
        return int(getattr(cfg, "vocab_size", 50_000) or 50_000)
