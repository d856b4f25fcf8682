"""The running state of a recording: bounded buffers updated batch by batch.

Per layer (`LayerState`), for every neuron: the top-K windows by the neuron's max activation in
the window (with the per-token activations and token ids of those windows), the running max, min,
sum, count of positive activations and the activation histogram. Shared by all layers
(`SampleState`): a uniform random sample of S windows, chosen by a seeded hash of the window
index (the S smallest hashes seen so far: a "bottom-S sketch"), whose per-token activations are
kept for every neuron. Every buffer has a fixed size, so memory does not grow with the corpus.

The sample's activations are kept dense (`[S, T, N]` float16) for dense units (MLP neurons:
almost no value is exactly zero) and sparse for sparse units (SAE latents: a few dozen of 65k
are nonzero per token), as per-slot (pos, unit, value) lists of the nonzero values only. Both
hold exactly the same float16 values; the sparse form bounds memory by the nonzeros of the
sample, not units x sample size (docs/units.md has the measured figures).

Determinism (needed for bit-identical resume): every update depends only on the state and the
batch; ties in the top-K go to the earlier window (a stable sort over [old entries, new windows in
stream order]); the sample is the set of smallest hashes, whatever the batch boundaries.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from neuron2graph.record.histogram import FIRST_POSITIVE, N_BINS, SHIFT, code_table

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)

HIST_BLOCK = 64
"""Neurons histogrammed per bincount (see `LayerState.update_stats`): 64 x 516 int64 counts fit
a core's L2 cache; 32 and 128 were slower here, 16 much slower (more, smaller ops)."""


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
             "hist", "sample_acts", "sample_max")

    SPARSE_NAMES = ("sample_ptr", "sample_pos", "sample_unit", "sample_val")

    def __init__(
        self, n_neurons: int, top_k: int, width: int, sample: int, *, sparse: bool = False
    ) -> None:
        n, k, t, s = n_neurons, top_k, width, sample
        self.n, self.k, self.t, self.s, self.sparse = n, k, t, s, sparse
        self.top_max = torch.full((n, k), -torch.inf)
        self.top_window = torch.full((n, k), -1, dtype=torch.int64)
        self.top_len = torch.zeros((n, k), dtype=torch.int32)
        self.top_tokens = torch.zeros((n, k, t), dtype=torch.int32)
        self.top_acts = torch.zeros((n, k, t))
        self.max = torch.full((n,), -torch.inf)
        self.min = torch.full((n,), torch.inf)
        self.sum = torch.zeros((n,), dtype=torch.float64)
        self.hist = torch.zeros((n * N_BINS,), dtype=torch.int64)
        self.sample_acts = torch.zeros((0 if sparse else s, t, n), dtype=torch.float16)
        self.sample_entries: list[tuple[Tensor, Tensor, Tensor] | None] = [None] * s
        """Sparse mode: per sample slot, (pos int16, unit int32, value float16) of nonzeros."""
        self.sample_max = torch.full((s, n), -torch.inf)
        self._lut = torch.from_numpy(code_table().astype(np.int32))
        self._offset = torch.arange(n, dtype=torch.int32) * N_BINS

    # ------------------------------------------------------------ persistence
    def tensors(self, prefix: str) -> dict[str, Tensor]:
        out = {f"{prefix}{name}": getattr(self, name) for name in self.NAMES}
        if self.sparse:
            out.update({f"{prefix}{k}": v for k, v in self._sparse_tensors().items()})
        return out

    def load(self, tensors: dict[str, Tensor], prefix: str) -> None:
        for name in self.NAMES:
            current = getattr(self, name)
            value = tensors[f"{prefix}{name}"]
            if value.shape != current.shape or value.dtype != current.dtype:
                raise ValueError(f"checkpoint tensor {prefix}{name} has the wrong shape or dtype")
            setattr(self, name, value)
        if self.sparse:
            ptr, pos, unit, val = (tensors[f"{prefix}{k}"] for k in self.SPARSE_NAMES)
            if ptr.shape != (self.s + 1,):
                raise ValueError(f"checkpoint tensor {prefix}sample_ptr has the wrong shape")
            self.sample_entries = [
                (pos[a:b], unit[a:b], val[a:b]) for a, b in pairwise(ptr.tolist())
            ]

    def _sparse_tensors(self) -> dict[str, Tensor]:
        """The per-slot nonzeros as flat arrays with slot pointers (`ptr[s]..ptr[s+1]`)."""
        empty = (torch.zeros(0, dtype=torch.int16), torch.zeros(0, dtype=torch.int32),
                 torch.zeros(0, dtype=torch.float16))
        parts = [e if e is not None else empty for e in self.sample_entries]
        sizes = torch.tensor([0] + [len(p[0]) for p in parts], dtype=torch.int64)
        return {
            "sample_ptr": sizes.cumsum(0),
            "sample_pos": torch.cat([p[0] for p in parts]) if parts else empty[0],
            "sample_unit": torch.cat([p[1] for p in parts]) if parts else empty[1],
            "sample_val": torch.cat([p[2] for p in parts]) if parts else empty[2],
        }

    def sparse_sample(self, order: Tensor) -> dict[str, Tensor]:
        """The sample of the slots in `order` as unit-major CSR: `sample_ptr [N+1]`, then per
        entry `sample_row` (index into `order`), `sample_pos` and `sample_val`, sorted by
        (unit, row, pos): one unit's sample is one contiguous slice on disk."""
        pos, unit, val, row = [], [], [], []
        for i, slot in enumerate(order.tolist()):
            entry = self.sample_entries[slot]
            if entry is not None:
                pos.append(entry[0])
                unit.append(entry[1])
                val.append(entry[2])
                row.append(torch.full((len(entry[0]),), i, dtype=torch.int32))
        p = torch.cat(pos) if pos else torch.zeros(0, dtype=torch.int16)
        u = torch.cat(unit).long() if unit else torch.zeros(0, dtype=torch.int64)
        v = torch.cat(val) if val else torch.zeros(0, dtype=torch.float16)
        r = torch.cat(row) if row else torch.zeros(0, dtype=torch.int32)
        key = (u * max(1, len(order)) + r.long()) * self.t + p.long()
        sort = torch.argsort(key)
        ptr = torch.zeros(self.n + 1, dtype=torch.int64)
        ptr[1:] = torch.bincount(u, minlength=self.n).cumsum(0)
        return {"sample_ptr": ptr, "sample_row": r[sort], "sample_pos": p[sort],
                "sample_val": v[sort]}

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
        """Fold the batch into max/min/sum/hist; return the per-neuron sum.

        The sum doubles as the NaN/inf check: it is finite exactly when every value is. The
        count of positive values is not kept separately: the histogram has an edge at 0.
        """
        if batch.bos_only_excluded:
            vals = acts[:, 1:, :]  # a strided view: no copy
        elif bool(batch.valid.all()):
            vals = acts
        else:
            vals = acts[batch.valid][None]  # [1, tokens, n]
        # Reduce over positions first, then over windows: much faster than one reduction over
        # both dims of a strided view.
        total = vals.sum(1).sum(0)
        self.sum += total
        torch.maximum(self.max, win_max.amax(0), out=self.max)
        torch.minimum(self.min, vals.amin(1).amin(0), out=self.min)
        # The bin of every value: bits >> SHIFT, masked to the table's 12 bits, looked up with
        # torch's int32 index_select (5x faster than numpy fancy indexing, which bounds-checks
        # and wraps per element), into per-thread scratch buffers (fresh 12 MB tensors per
        # layer and batch cost page faults), then one bincount over (neuron, bin) per block of
        # HIST_BLOCK neurons: a block's counts (264 KB) stay in the core's cache while its
        # values are scattered into them, where one bincount over all neurons scatters into a
        # 6 MB table (and allocates and zeroes it): 6.9 ms against 10.4 ms per layer and batch.
        # The counts are integers, so they are the same whatever the order.
        v32 = vals.view(torch.int32)
        lead = vals.shape[:2]
        rows = lead[0] * lead[1]
        codes, index = _scratch(rows * min(HIST_BLOCK, self.n))
        hist = self.hist.view(self.n, N_BINS)
        for start in range(0, self.n, HIST_BLOCK):
            width = min(HIST_BLOCK, self.n - start)
            code = codes[: rows * width].view(*lead, width)
            torch.bitwise_right_shift(v32[:, :, start : start + width], SHIFT, out=code)
            code &= 0xFFF
            idx = index[: rows * width]
            torch.index_select(self._lut, 0, code.view(-1), out=idx)
            idx.view(rows, width).add_(self._offset[:width])
            hist[start : start + width].view(-1).add_(
                torch.bincount(idx, minlength=width * N_BINS))
        return total

    def n_pos(self) -> Int[Tensor, " n"]:
        return self.hist.view(self.n, N_BINS)[:, FIRST_POSITIVE:].sum(1)

    def update_top(
        self, acts: Float[Tensor, "batch pos n"], batch: Batch, win_max: Float[Tensor, "batch n"]
    ) -> None:
        """Put the batch's windows that beat a neuron's current K-th into that neuron's slots.

        Slots are unordered (sorted once, by `sorted_top`, at the end), so an update copies only
        the per-token activations of the windows that enter, never the K kept ones. Which windows
        enter is decided by a stable sort over [kept slots in (value desc, window asc) order, then
        the batch in stream order], so ties go to the earlier window, as in a global sort.
        """
        kth = self.top_max.amin(1)
        beaten = (win_max > kth).any(0)
        sel = beaten.nonzero().squeeze(1)
        if sel.numel() == 0:
            return
        n_sel, b, k = sel.numel(), win_max.shape[0], self.k
        old_max, old_win = self.top_max[sel], self.top_window[sel]
        # Order kept slots by (value desc, window asc) so that the stable sort below breaks ties
        # between kept windows by window index; batch windows come after (they are later).
        slot_order = _value_then_window_order(old_max, old_win)
        cand_max = torch.cat([old_max.gather(1, slot_order), win_max[:, sel].T], 1)
        keep = torch.sort(cand_max, dim=1, descending=True, stable=True).indices[:, :k]
        kept = torch.zeros((n_sel, k + b), dtype=torch.bool)
        kept.scatter_(1, keep, True)
        evicted_sorted = ~kept[:, :k]  # in slot_order positions
        entering = kept[:, k:]  # [n_sel, b]
        # Pair evicted slots with entering windows row by row (equal counts per row).
        er, ec = evicted_sorted.nonzero(as_tuple=True)
        nr, nb = entering.nonzero(as_tuple=True)
        slots = slot_order[er, ec]
        neurons = sel[nr]
        self.top_max[neurons, slots] = win_max[nb, neurons]
        self.top_window[neurons, slots] = batch.window[nb]
        self.top_len[neurons, slots] = batch.length[nb]
        self.top_tokens[neurons, slots] = batch.tokens[nb]
        self.top_acts[neurons, slots] = acts[nb, :, neurons]

    def sorted_top(self) -> dict[str, Tensor]:
        """The top-K slots of every neuron in (value desc, window asc) order; empty slots last."""
        order = _value_then_window_order(self.top_max, self.top_window)
        deep = order[:, :, None].expand(-1, -1, self.t)
        return {
            "top_max": self.top_max.gather(1, order),
            "top_window": self.top_window.gather(1, order),
            "top_len": self.top_len.gather(1, order),
            "top_tokens": self.top_tokens.gather(1, deep),
            "top_acts": self.top_acts.gather(1, deep),
        }

    def update_sample(
        self,
        acts: Float[Tensor, "batch pos n"],
        win_max: Float[Tensor, "batch n"],
        moves: list[tuple[int, int]],
    ) -> None:
        """Copy batch rows into sample slots, as decided by `SampleState.offer` (one copy)."""
        if not moves:
            return
        slots = torch.tensor([m[0] for m in moves], dtype=torch.int64)
        rows = torch.tensor([m[1] for m in moves], dtype=torch.int64)
        picked = acts.index_select(0, rows).clamp_(-65504.0, 65504.0).to(torch.float16)
        if self.sparse:
            for j, slot in enumerate(slots.tolist()):
                pos, unit = picked[j].nonzero(as_tuple=True)
                self.sample_entries[slot] = (
                    pos.to(torch.int16), unit.to(torch.int32), picked[j][pos, unit])
        else:
            self.sample_acts[slots] = picked
        self.sample_max[slots] = win_max.index_select(0, rows)


_SCRATCH = threading.local()


def _scratch(size: int) -> tuple[Tensor, Tensor]:
    """Two int32 buffers of `size` elements for the histogram, reused across batches and layers;
    one pair per thread, so that layers folded in parallel (recorder.fold_batch) never share."""
    bufs: tuple[Tensor, Tensor] | None = getattr(_SCRATCH, "bufs", None)
    if bufs is None or bufs[0].numel() < size:
        bufs = (torch.empty(size, dtype=torch.int32), torch.empty(size, dtype=torch.int32))
        _SCRATCH.bufs = bufs
    return bufs[0][:size], bufs[1][:size]


def release_scratch() -> None:
    """Free this thread's histogram buffers (the recorder calls it when a recording ends)."""
    _SCRATCH.bufs = None


def _value_then_window_order(values: Tensor, windows: Tensor) -> Tensor:
    """Per row, the column order by value descending, then window ascending (-1 = empty: last)."""
    big = torch.iinfo(torch.int64).max
    by_window = torch.argsort(torch.where(windows < 0, big, windows), dim=1, stable=True)
    by_value = torch.sort(values.gather(1, by_window), dim=1, descending=True, stable=True).indices
    return by_window.gather(1, by_value)


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
            setattr(self, name, tensors[f"{prefix}{name}"])

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
