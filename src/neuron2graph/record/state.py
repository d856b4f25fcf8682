"""The running state of a recording: bounded buffers updated batch by batch.

Per layer (`LayerState`), for every neuron: the top-K windows by the neuron's max activation in
the window (with the per-token activations and token ids of those windows), the running max, min,
sum, count of positive activations and the activation histogram. Shared by all layers
(`SampleState`): a uniform random sample of S windows, chosen by a seeded hash of the window
index (the S smallest hashes seen so far: a "bottom-S sketch"), whose per-token activations are
kept for every neuron. Every buffer has a fixed size, so memory does not grow with the corpus.

Determinism (needed for bit-identical resume): every update depends only on the state and the
batch; ties in the top-K go to the earlier window (a stable sort over [old entries, new windows in
stream order]); the sample is the set of smallest hashes, whatever the batch boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from neuron2graph.record.histogram import N_BINS, SHIFT, code_table

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def window_keys(indices: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of (seed, window index): a fixed pseudo-random key per window, as int64 >= 0."""
    with np.errstate(over="ignore"):
        z = indices.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = (z + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(1)).astype(np.int64)


@dataclass
class Batch:
    """One batch of windows as the state updaters see it."""

    window: Int[Tensor, " batch"]
    length: Int[Tensor, " batch"]
    tokens: Int[Tensor, "batch pos"]
    valid: Bool[Tensor, "batch pos"]
    """Positions that count: real tokens, not padding and not the BOS added at position 0."""
    bos_only_excluded: bool
    """True when `valid` is exactly "every position but 0" (the fast path: no copy needed)."""


class LayerState:
    """Top-K, statistics and histogram for every neuron of one layer."""

    NAMES = ("top_max", "top_window", "top_len", "top_tokens", "top_acts", "max", "min", "sum",
             "n_pos", "hist", "sample_acts", "sample_max")

    def __init__(self, n_neurons: int, top_k: int, width: int, sample: int) -> None:
        n, k, t, s = n_neurons, top_k, width, sample
        self.n, self.k, self.t = n, k, t
        self.top_max = torch.full((n, k), -torch.inf)
        self.top_window = torch.full((n, k), -1, dtype=torch.int64)
        self.top_len = torch.zeros((n, k), dtype=torch.int32)
        self.top_tokens = torch.zeros((n, k, t), dtype=torch.int32)
        self.top_acts = torch.zeros((n, k, t))
        self.max = torch.full((n,), -torch.inf)
        self.min = torch.full((n,), torch.inf)
        self.sum = torch.zeros((n,), dtype=torch.float64)
        self.n_pos = torch.zeros((n,), dtype=torch.int64)
        self.hist = torch.zeros((n * N_BINS,), dtype=torch.int64)
        self.sample_acts = torch.zeros((s, t, n), dtype=torch.float16)
        self.sample_max = torch.full((s, n), -torch.inf)
        self._lut = torch.from_numpy(code_table())
        self._offset = torch.arange(n, dtype=torch.int64) * N_BINS

    # ------------------------------------------------------------ persistence
    def tensors(self, prefix: str) -> dict[str, Tensor]:
        return {f"{prefix}{name}": getattr(self, name) for name in self.NAMES}

    def load(self, tensors: dict[str, Tensor], prefix: str) -> None:
        for name in self.NAMES:
            current = getattr(self, name)
            value = tensors[f"{prefix}{name}"]
            if value.shape != current.shape or value.dtype != current.dtype:
                raise ValueError(f"checkpoint tensor {prefix}{name} has the wrong shape or dtype")
            setattr(self, name, value.clone())

    # ---------------------------------------------------------------- update
    def window_max(
        self, acts: Float[Tensor, "batch pos n"], batch: Batch
    ) -> Float[Tensor, "batch n"]:
        if batch.bos_only_excluded:
            return acts[:, 1:, :].amax(1)
        return acts.masked_fill(~batch.valid[:, :, None], -torch.inf).amax(1)

    def update_stats(
        self, acts: Float[Tensor, "batch pos n"], batch: Batch, win_max: Float[Tensor, "batch n"]
    ) -> Float[Tensor, " n"]:
        """Fold the batch into max/min/sum/n_pos/hist; return the per-neuron sum.

        The sum doubles as the NaN/inf check: it is finite exactly when every value is.
        """
        if batch.bos_only_excluded:
            vals = acts[:, 1:, :]
            dims: tuple[int, ...] = (0, 1)
        elif bool(batch.valid.all()):
            vals, dims = acts, (0, 1)
        else:
            vals, dims = acts[batch.valid], (0,)
        total = vals.sum(dims)
        self.sum += total
        torch.maximum(self.max, win_max.amax(0), out=self.max)
        torch.minimum(self.min, vals.amin(dims), out=self.min)
        self.n_pos += (vals > 0).sum(dims)
        codes = vals.view(torch.int32) >> SHIFT  # works on strided views: no copy
        index = self._lut[codes]
        index += self._offset
        self.hist += torch.bincount(index.view(-1), minlength=self.hist.numel())
        return total

    def update_top(
        self, acts: Float[Tensor, "batch pos n"], batch: Batch, win_max: Float[Tensor, "batch n"]
    ) -> None:
        """Merge the batch's windows into each neuron's top-K (only where the K-th is beaten)."""
        beaten = (win_max > self.top_max[:, -1]).any(0)
        sel = beaten.nonzero().squeeze(1)
        if sel.numel() == 0:
            return
        n_sel, b, k = sel.numel(), win_max.shape[0], self.k
        cand_max = torch.cat([self.top_max[sel], win_max[:, sel].T], 1)
        order = torch.sort(cand_max, dim=1, descending=True, stable=True).indices[:, :k]
        cand_window = torch.cat([self.top_window[sel], batch.window[None].expand(n_sel, b)], 1)
        cand_len = torch.cat([self.top_len[sel], batch.length[None].expand(n_sel, b)], 1)
        new_tokens = batch.tokens[None].expand(n_sel, b, self.t)
        new_acts = acts.index_select(2, sel).permute(2, 0, 1)
        cand_tokens = torch.cat([self.top_tokens[sel], new_tokens], 1)
        cand_acts = torch.cat([self.top_acts[sel], new_acts], 1)
        deep = order[:, :, None].expand(n_sel, k, self.t)
        self.top_max[sel] = cand_max.gather(1, order)
        self.top_window[sel] = cand_window.gather(1, order)
        self.top_len[sel] = cand_len.gather(1, order)
        self.top_tokens[sel] = cand_tokens.gather(1, deep)
        self.top_acts[sel] = cand_acts.gather(1, deep)

    def update_sample(
        self,
        acts: Float[Tensor, "batch pos n"],
        win_max: Float[Tensor, "batch n"],
        moves: list[tuple[int, int]],
    ) -> None:
        """Copy batch rows into sample slots, as decided by `SampleState.offer`."""
        for slot, row in moves:
            self.sample_acts[slot] = acts[row].clamp(-65504.0, 65504.0).to(torch.float16)
            self.sample_max[slot] = win_max[row]


class SampleState:
    """Which windows form the uniform random sample: the S smallest hash keys seen so far."""

    NAMES = ("key", "window", "length", "tokens")

    def __init__(self, size: int, width: int, seed: int) -> None:
        self.size, self.seed = size, seed
        self.key = torch.full((size,), -1, dtype=torch.int64)  # -1: empty slot
        self.window = torch.full((size,), -1, dtype=torch.int64)
        self.length = torch.zeros((size,), dtype=torch.int32)
        self.tokens = torch.zeros((size, width), dtype=torch.int32)

    def tensors(self, prefix: str) -> dict[str, Tensor]:
        return {f"{prefix}{name}": getattr(self, name) for name in self.NAMES}

    def load(self, tensors: dict[str, Tensor], prefix: str) -> None:
        for name in self.NAMES:
            setattr(self, name, tensors[f"{prefix}{name}"].clone())

    def offer(self, batch: Batch) -> list[tuple[int, int]]:
        """Admit the batch's windows whose key is among the S smallest; return (slot, row) moves."""
        if self.size == 0:
            return []
        keys = window_keys(batch.window.numpy(), self.seed)
        moves: dict[int, int] = {}
        for row in range(len(keys)):
            key = int(keys[row])
            empty = (self.key < 0).nonzero()
            if empty.numel():
                slot = int(empty[0])
            else:
                slot = int(self.key.argmax())
                if key >= int(self.key[slot]):
                    continue
            self.key[slot] = key
            self.window[slot] = batch.window[row]
            self.length[slot] = batch.length[row]
            self.tokens[slot] = batch.tokens[row]
            moves[slot] = row  # a later row may take the same slot again: last one wins
        return sorted(moves.items())

    def order(self) -> Tensor:
        """Filled slots sorted by window index (the canonical order of the stored sample)."""
        filled = (self.key >= 0).nonzero().squeeze(1)
        return filled[torch.argsort(self.window[filled])]
