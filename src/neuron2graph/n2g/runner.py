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
from jaxtyping import Bool, Float, Int
from torch import Tensor

from neuron2graph.models.forward import pad_batch
from neuron2graph.models.hooks import cache_kwarg as _cache_kwarg
from neuron2graph.models.hooks import cache_of as _cache_of
from neuron2graph.models.loading import LoadedModel
from neuron2graph.n2g import prefix, propose
from neuron2graph.n2g.prefix import Key
from neuron2graph.units.registry import make_source
from neuron2graph.units.source import ActivationSource


@dataclass
class Meter:
    """Model work attributed to one neuron."""

    token_layers: float = 0.0
    padded_token_layers: float = 0.0
    forward_seconds: float = 0.0
    forward_rows: float = 0.0
    by_stage: dict[str, float] = field(default_factory=dict)
    """Token-layers per pipeline stage (prune, saliency, augment ...)."""


def _batches(lengths: Sequence[int], max_tokens: int, max_rows: int,
             max_waste: float | None = None) -> Iterator[list[int]]:
    """Indices (already sorted by length) grouped so that rows x width stays under max_tokens
    and, with `max_waste`, padding stays under that fraction of the batch's real tokens."""
    batch: list[int] = []
    real = 0
    for i, n in enumerate(lengths):
        width = max(n, lengths[batch[0]] if batch else 0)
        wasteful = max_waste is not None and (len(batch) + 1) * width > (1 + max_waste) * (real + n)
        if batch and ((len(batch) + 1) * width > max_tokens or len(batch) >= max_rows
                      or wasteful):
            yield batch
            batch = []
            real = 0
        batch.append(i)
        real += n
    if batch:
        yield batch


class LayerRunner:
    """Runs token sequences for the units `neuron_ids` of `layer`, one column per unit.

    `source` gives the units (default: the MLP neurons of `lm`); the runner only ever asks it
    for activations, so N2G explains any unit kind."""

    def __init__(
        self,
        lm: LoadedModel,
        layer: int,
        neuron_ids: Sequence[int],
        *,
        max_batch_tokens: int = 8192,
        max_rows: int = 256,
        source: ActivationSource | None = None,
        prefix_bucket: int = 1,
        prefix_merge: int = 64,
    ) -> None:
        self.source = source or make_source("neurons", lm)
        self.source.check(layer)
        for n in neuron_ids:
            self.source.check(layer, n)
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
        self.prefix_bucket = prefix_bucket
        self.prefix_merge = prefix_merge
        """A group of variants with equal prefix runs from the next shorter group's prefix when
        that recomputes at most this many tokens (fewer, larger forwards; 64 measured best of 0,
        64 and 256 at layer 10: saliency 6.1 -> 4.3 s)."""
        """`acts(..., shared=...)` rounds shared prefixes down to multiples of this (0: never
        use a prefix cache); see `n2g/prefix.py`."""

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
    def _mean_embedding(self, special: Bool[Tensor, "batch pos"]) -> Iterator[None]:
        """Positions marked in `special` get the mean of all input embeddings (a mask that is no
        token at all); a hook on the embedding module swaps them in, for any architecture."""
        if not bool(special.any()):
            yield
            return
        model: Any = self.lm.model
        emb: Any = model.get_input_embeddings()
        mean: Tensor = emb.weight.detach().mean(0)

        def hook(_module: object, _args: object, output: Tensor) -> Tensor:
            where = special.to(output.device)[..., None]
            return torch.where(where, mean.to(output.device, output.dtype), output)

        handle = emb.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    # ------------------------------------------------------------- forwards
    def acts(
        self,
        sequences: Sequence[Sequence[int]],
        owners: Sequence[int],
        *,
        mean_at: Sequence[int | None] | None = None,
        shared: Sequence[tuple[Sequence[int], int] | None] | None = None,
    ) -> list[list[float]]:
        """Activation of neuron column `owners[i]` on every token of `sequences[i]`; where
        `mean_at[i]` is a position, that token is fed the mean input embedding instead.

        `shared[i] = (root, k)` says that `sequences[i][:k] == root[:k]` (a saliency variant
        and its prompt): such sequences run from the KV cache of the root's prefix
        (`n2g/prefix.py`) when `prefix_bucket` > 0 and the source and model allow it; the
        activations are the same up to float rounding."""
        where = list(mean_at) if mean_at is not None else [None] * len(sequences)
        unique: dict[Key, list[int]] = {}
        share: dict[Key, tuple[tuple[int, ...], int]] = {}
        for i, (seq, col, at) in enumerate(zip(sequences, owners, where, strict=True)):
            key = (tuple(seq), at)
            unique.setdefault(key, []).append(col)
            if shared is not None and shared[i] is not None and key not in share:
                root, k = shared[i]  # type: ignore[misc]
                share[key] = (tuple(root), k)
        results: dict[Key, Tensor] = {}
        if share and self.prefix_bucket > 0 and prefix.usable(self):
            plan = prefix.plan_prefixes(unique, share, self.prefix_bucket)
            results.update(prefix.run_prefixed(self, unique, plan))
        self._run_whole(unique, [key for key in unique if key not in results], results)
        return [
            results[(tuple(seq), at)][:, col].tolist()
            for seq, col, at in zip(sequences, owners, where, strict=True)
        ]

    def _run_whole(self, unique: dict[Key, list[int]], todo: list[Key],
                   results: dict[Key, Tensor]) -> None:
        """Run the sequences `todo` from token 0, right-padded in token-budgeted batches."""
        keys = sorted(todo, key=lambda key: len(key[0]))
        lengths = [len(k[0]) for k in keys]
        for batch in _batches(lengths, self.max_batch_tokens, self.max_rows):
            batch_keys = [keys[i] for i in batch]
            seqs = [k[0] for k in batch_keys]
            ids, mask = pad_batch(seqs, self.pad_id)
            special = torch.zeros(ids.shape, dtype=torch.bool)
            for row, (_seq, at) in enumerate(batch_keys):
                if at is not None:
                    special[row, at] = True
            start = time.perf_counter()
            with self._mean_embedding(special):
                out = self.source.activations(
                    ids, [self.layer], attention_mask=mask, units={self.layer: self.index},
                )[self.layer].cpu()
            seconds = time.perf_counter() - start
            self._charge([sorted(set(unique[k])) for k in batch_keys], [len(s) for s in seqs],
                         ids.shape[1], self.layer + 1, seconds)
            for row, key in enumerate(batch_keys):
                results[key] = out[row, : len(key[0])]

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

    def propose(self, sequences: Sequence[Sequence[int]], at: Sequence[Sequence[int]],
                k: int) -> list[dict[int, tuple[list[int], list[float]]]]:
        """Top-k next tokens after the positions `at[i]` of `sequences[i]` only
        (`n2g/propose.py`); the same as `next_tokens` there, without the other positions."""
        return propose.propose(self, sequences, at, k)

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
            cache = _cache_of(pre)
            cache.batch_repeat_interleave(m)
            cand = torch.tensor([int(c) for c in candidates], device=lm.device)
            first = pre.logits[0, -1].float().log_softmax(-1)[cand]
            out = lm.model(input_ids=suffix, use_cache=True, **{_cache_kwarg(lm.model): cache})
        else:
            out = lm.model(input_ids=suffix, use_cache=False)
        logp = out.logits.float().log_softmax(-1)
        rest = logp[:, :-1].gather(-1, suffix[:, 1:, None])[..., 0].sum(-1)
        scores = (first + rest).cpu().tolist()
        seconds = time.perf_counter() - start
        owners = [[0]] if self._shared is None else [[]]
        self._charge(owners, [k + m * (n - k)], k + m * (n - k), lm.n_layers, seconds)
        return [float(x) for x in scores]

    @torch.inference_mode()
    def rerank_many(
        self, requests: Sequence[tuple[Sequence[int], int, Sequence[int]]]
    ) -> list[list[float]]:
        """`rerank` for many (prompt, k, candidates) groups at once, in a few padded forwards.

        Per-group calls are dominated by per-call overhead on small matmuls (a layer-0 neuron made
        ~45 of them, 43 of its 47 s), so the groups are batched. Groups with k >= 1 share their
        prefix tokens[:k] between candidates (and between groups with the same prefix): all
        groups with the same k run their distinct prefixes once, KV-cached, then every
        candidate's suffix (candidate, tokens[k+1:]) right-padded on that cache
        (`_rerank_prefixed`), so a row costs its suffix, not its whole prompt. Groups with k = 0
        have no prefix: every candidate's whole prompt runs right-padded (`_rerank_rows`). The
        LM head and log_softmax are applied only to the hidden states that predict tokens k..n-1
        (the candidate at k = 0 is unscored, as in `rerank`), so the scores equal `rerank`'s up
        to float rounding.
        """
        rows: dict[tuple[tuple[int, ...], int], float] = {}
        for prompt, k, cands in requests:
            for c in cands:
                full = (*prompt[:k], int(c), *prompt[k + 1 :])
                rows[(full, k)] = 0.0
        self._rerank_rows(rows, [key for key in rows if key[1] == 0])
        by_k: dict[int, list[tuple[tuple[int, ...], int]]] = {}
        for key in rows:
            if key[1] > 0:
                by_k.setdefault(key[1], []).append(key)
        for k, keys in sorted(by_k.items()):
            self._rerank_prefixed(rows, k, keys)
        return [
            [rows[((*prompt[:k], int(c), *prompt[k + 1 :]), k)] for c in cands]
            for prompt, k, cands in requests
        ]

    def _head_logp(self, hidden: Tensor, target: Tensor) -> Tensor:
        """log p(target) under the LM head for each row of `hidden` [rows, d], in chunks that
        bound the [rows, vocab] logits (~16 MB in fp32)."""
        model: Any = self.lm.model
        head: Any = model.get_output_embeddings()
        cap = getattr(getattr(model, "config", None), "final_logit_softcapping", None)
        head_rows = max(1, 4_000_000 // max(1, self._vocab()))
        out = torch.empty(len(target), dtype=torch.float32, device=hidden.device)
        for a in range(0, len(target), head_rows):
            logits = head(hidden[a : a + head_rows]).float()
            if cap:
                logits = torch.tanh(logits / cap) * cap
            out[a : a + head_rows] = logits.log_softmax(-1).gather(
                -1, target[a : a + head_rows, None])[:, 0]
        return out

    def _rerank_prefixed(self, rows: dict[tuple[tuple[int, ...], int], float], k: int,
                         keys: list[tuple[tuple[int, ...], int]]) -> None:
        """Score rows that all replace position k >= 1: distinct prefixes once, KV-cached, then
        the suffixes on the cache, in token-budgeted chunks (rows of one prefix stay together)."""
        keys = sorted(keys, key=lambda key: (key[0][:k], len(key[0])))
        chunk: list[tuple[tuple[int, ...], int]] = []
        width = 0
        for key in keys:
            wide = max(width, len(key[0]))
            if chunk and ((len(chunk) + 1) * wide > self.max_batch_tokens
                          or len(chunk) >= self.max_rows):
                self._score_prefixed(rows, k, chunk)
                chunk, wide = [], len(key[0])
            chunk.append(key)
            width = wide
        if chunk:
            self._score_prefixed(rows, k, chunk)

    def _score_prefixed(self, rows: dict[tuple[tuple[int, ...], int], float], k: int,
                        chunk: list[tuple[tuple[int, ...], int]]) -> None:
        """One chunk of `_rerank_prefixed`: its distinct prefixes, then its suffixes."""
        lm = self.lm
        model: Any = lm.model
        base: Any = model.base_model
        prefixes = list(dict.fromkeys(s[:k] for s, _k in chunk))
        where = {p: j for j, p in enumerate(prefixes)}
        start = time.perf_counter()
        pre = base(input_ids=torch.tensor(prefixes, device=lm.device), use_cache=True)
        cache = _cache_of(pre)
        owner = torch.tensor([where[s[:k]] for s, _k in chunk], device=lm.device)
        cands = torch.tensor([s[k] for s, _k in chunk], device=lm.device)
        first = self._head_logp(pre.last_hidden_state[owner, -1], cands)
        sums = first.clone()
        # the last token predicts nothing that is scored: each row runs s[k:-1] for s[k+1:]
        live = [r for r, (s, _k) in enumerate(chunk) if len(s) - k > 1]
        width = 0
        if live:
            cache.batch_select_indices(owner[live])
            suffix = pad_batch([chunk[r][0][k:-1] for r in live], self.pad_id)[0].to(lm.device)
            target = pad_batch([chunk[r][0][k + 1 :] for r in live],
                               self.pad_id)[0].to(lm.device)
            width = suffix.shape[1]
            # right padding needs no mask: a causal model's real positions never see later pads
            hidden = base(input_ids=suffix, use_cache=True,
                          **{_cache_kwarg(base): cache}).last_hidden_state
            row_idx = [r for r in live for _j in range(len(chunk[r][0]) - k - 1)]
            pos_idx = [j for r in live for j in range(len(chunk[r][0]) - k - 1)]
            live_row = {r: i for i, r in enumerate(live)}
            rsel = torch.as_tensor(row_idx, dtype=torch.long, device=hidden.device)
            hsel = torch.as_tensor([live_row[r] for r in row_idx], dtype=torch.long,
                                   device=hidden.device)
            psel = torch.as_tensor(pos_idx, dtype=torch.long, device=hidden.device)
            sums.index_add_(0, rsel, self._head_logp(hidden[hsel, psel], target[hsel, psel]))
        seconds = time.perf_counter() - start
        tokens = [k] * len(prefixes) + [len(s) - k - 1 for s, _k in chunk if len(s) - k > 1]
        owners = [[0] for _ in tokens] if self._shared is None else [[] for _ in tokens]
        self._charge(owners, tokens, k + width, lm.n_layers, seconds)
        for key, score in zip(chunk, sums.cpu().tolist(), strict=True):
            rows[key] = float(score)

    def _rerank_rows(self, rows: dict[tuple[tuple[int, ...], int], float],
                     keys: list[tuple[tuple[int, ...], int]]) -> None:
        """Score whole rows, right-padded in token-budgeted batches (rows with k = 0)."""
        lm = self.lm
        keys = sorted(keys, key=lambda r: len(r[0]))
        model: Any = lm.model
        base: Any = model.base_model
        # the last token predicts nothing that is scored: run s[:-1] to score s[1:]; a
        # one-token row scores nothing (its candidate, at k = 0, is unscored)
        for key in keys:
            if len(key[0]) < 2:
                rows[key] = 0.0
        keys = [key for key in keys if len(key[0]) >= 2]
        lengths = [len(s) - 1 for s, _k in keys]
        # padding is real compute at full depth (the rows are short and many): bound it at 10%
        for batch in _batches(lengths, self.max_batch_tokens, self.max_rows, max_waste=0.1):
            seqs = [keys[i] for i in batch]
            ids, mask = pad_batch([s[:-1] for s, _k in seqs], self.pad_id)
            target = pad_batch([s[1:] for s, _k in seqs], self.pad_id)[0]
            start = time.perf_counter()
            hidden = base(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device),
                          use_cache=False).last_hidden_state
            row_idx: list[int] = []
            pos_idx: list[int] = []
            for r, (seq, k) in enumerate(seqs):
                span = range(max(k - 1, 0), len(seq) - 1)
                row_idx.extend([r] * len(span))
                pos_idx.extend(span)
            rsel = torch.as_tensor(row_idx, dtype=torch.long, device=hidden.device)
            psel = torch.as_tensor(pos_idx, dtype=torch.long, device=hidden.device)
            token_logp = self._head_logp(hidden[rsel, psel], target.to(hidden.device)[rsel, psel])
            sums = torch.zeros(len(seqs), dtype=torch.float32, device=hidden.device)
            sums.index_add_(0, rsel, token_logp)
            seconds = time.perf_counter() - start
            owners = [[0] for _ in seqs] if self._shared is None else [[] for _ in seqs]
            self._charge(owners, [len(s) - 1 for s, _k in seqs], ids.shape[1], lm.n_layers,
                         seconds)
            for key, score in zip(seqs, sums.cpu().tolist(), strict=True):
                rows[key] = float(score)

    def _vocab(self) -> int:
        cfg = getattr(self.lm.model, "config", None)
        return int(getattr(cfg, "vocab_size", 50_000) or 50_000)
