"""Truncated forwards of sequences that share a prefix with a "root", from the root's KV cache.

Saliency's masked variant k of a prompt equals the prompt on tokens[:k]: in a causal model its
keys, values and activations there are the prompt's. Run from token 0 (as `LayerRunner.acts`
does), a prompt's variants cost about n^2 token-layers; here each root (the prompt, cut after
the longest prefix any of its variants uses) runs once with a KV cache, and every variant runs
only its suffix on a copy of that cache cropped to its prefix. At layer 20 the saliency of pruned
and augmented prompts was ~70% of an N2G build's model work (docs/scale.md); this roughly halves
it.

Prefix lengths are rounded down to a multiple of `bucket` so that the variants of a root batch
fall into a few groups of equal prefix length, each one right-padded batch on one cache (a
variant then recomputes at most `bucket - 1` tokens it shares with its root). Variants whose
rounded prefix is 0 run whole, as before. The activations equal the uncached ones up to float
rounding (tests/integration/test_n2g_prefix.py, on several architectures).

Only for sources with `supports_cache` and models whose layers keep a plain `DynamicLayer`
cache (a sliding-window cache may have dropped the prefix); `usable` says so, and the runner
falls back to whole sequences otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from neuron2graph.models.forward import pad_batch

if TYPE_CHECKING:
    from neuron2graph.n2g.runner import LayerRunner

Key = tuple[tuple[int, ...], int | None]
"""A sequence to run: (token ids, position fed the mean input embedding or None)."""


def new_cache(model: Any) -> Any:
    """An empty KV cache laid out for `model` (one layer object per decoder layer)."""
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


def usable(runner: LayerRunner) -> bool:
    """True when the runner's source takes a cache and every layer up to the runner's keeps
    all past keys (plain `DynamicLayer`: no sliding window, no offloading)."""
    if not getattr(runner.source, "supports_cache", False):
        return False
    try:
        from transformers.cache_utils import DynamicLayer

        layers = new_cache(runner.lm.model).layers
    except Exception:  # any other transformers layout: run whole sequences
        return False
    return len(layers) > runner.layer and all(
        type(layer) is DynamicLayer for layer in layers[: runner.layer + 1])


def _select(cache: Any, model: Any, rows: Sequence[int], length: int) -> Any:
    """A new cache holding rows `rows` (repeats allowed) of `cache`, cut to `length` positions."""
    out = new_cache(model)
    index = torch.as_tensor(list(rows), dtype=torch.long)
    for src, dst in zip(cache.layers, out.layers, strict=False):
        if getattr(src, "is_initialized", False) and src.keys is not None and src.keys.numel():
            idx = index.to(src.keys.device)
            dst.update(src.keys[idx, :, :length], src.values[idx, :, :length])
    return out


def plan_prefixes(
    unique: dict[Key, list[int]],
    shared: dict[Key, tuple[tuple[int, ...], int]],
    bucket: int,
) -> dict[Key, tuple[tuple[int, ...], int]]:
    """For each key that can use a cache: (root, prefix length > 0). `shared[key]` = (a root
    whose first k tokens the key's sequence repeats, k). The root is cut to the longest prefix
    its keys use; prefixes are rounded down to multiples of `bucket` and kept before a
    mean-embedding position and at least one token short of the sequence."""
    chosen: dict[Key, tuple[tuple[int, ...], int]] = {}
    longest: dict[tuple[int, ...], int] = {}
    for key in unique:
        if key not in shared:
            continue
        seq, at = key
        root, k = shared[key]
        p = min(k, len(seq) - 1, len(root), at if at is not None else k)
        p = (p // bucket) * bucket
        if p <= 0:
            continue
        if seq[:p] != root[:p]:
            raise ValueError("a sequence said to share a prefix with its root does not")
        chosen[key] = (root, p)
        longest[root] = max(longest.get(root, 0), p)
    return {key: (root[: longest[root]], p) for key, (root, p) in chosen.items()}


def run_prefixed(
    runner: LayerRunner,
    unique: dict[Key, list[int]],
    plan: dict[Key, tuple[tuple[int, ...], int]],
) -> dict[Key, Tensor]:
    """Activations `[len(seq), units]` of every key in `plan`: roots once (KV-cached, charged
    to their keys' neurons), then each key's suffix on its root's cache cut to its prefix."""
    from neuron2graph.n2g.runner import _batches

    by_root: dict[tuple[int, ...], list[Key]] = {}
    for key, (root, _p) in plan.items():
        by_root.setdefault(root, []).append(key)
    roots = sorted(by_root, key=len)
    layer, depth = runner.layer, runner.layer + 1
    units = {layer: runner.index}
    model = runner.lm.model
    results: dict[Key, Tensor] = {}
    for batch in _batches([len(r) for r in roots], runner.max_batch_tokens, runner.max_rows):
        batch_roots = [roots[i] for i in batch]
        ids, mask = pad_batch(batch_roots, runner.pad_id)
        cache = new_cache(model)
        start = time.perf_counter()
        base = runner.source.activations(ids, [layer], attention_mask=mask, units=units,
                                         cache=cache)[layer].cpu()
        owners = [sorted({c for key in by_root[r] for c in unique[key]}) for r in batch_roots]
        runner._charge(owners, [len(r) for r in batch_roots], ids.shape[1], depth,
                       time.perf_counter() - start)
        by_p: dict[int, list[tuple[int, Key]]] = {}
        for row, root in enumerate(batch_roots):
            for key in by_root[root]:
                by_p.setdefault(plan[key][1], []).append((row, key))
        for p, members in sorted(_merge_small(by_p, runner.prefix_merge).items()):
            members.sort(key=lambda m: len(m[1][0]))
            lengths = [len(key[0]) - p for _r, key in members]
            for sub in _batches(lengths, runner.max_batch_tokens, runner.max_rows,
                                max_waste=0.25):
                chunk = [members[i] for i in sub]
                _run_suffixes(runner, unique, chunk, p, cache, base, results)
    return results


def _merge_small(by_p: dict[int, list[tuple[int, Key]]],
                 budget: int) -> dict[int, list[tuple[int, Key]]]:
    """Groups of equal prefix length, a group run from a shorter prefix when that recomputes at
    most `budget` tokens (rows x the prefix tokens given up): one forward fewer, each of which
    costs a fixed overhead and small batches run far below the bare throughput. Running from a
    shorter prefix of the same root is always valid."""
    merged: dict[int, list[tuple[int, Key]]] = {}
    start: int | None = None
    for p in sorted(by_p):
        members = by_p[p]
        if start is not None and len(members) * (p - start) <= budget:
            merged[start].extend(members)
        else:
            start = p
            merged[p] = list(members)
    return merged


def _run_suffixes(
    runner: LayerRunner,
    unique: dict[Key, list[int]],
    chunk: list[tuple[int, Key]],
    p: int,
    cache: Any,
    base: Tensor,
    results: dict[Key, Tensor],
) -> None:
    """One right-padded batch of suffixes `seq[p:]` on rows of a root batch's cache."""
    layer = runner.layer
    suffix, _mask = pad_batch([key[0][p:] for _r, key in chunk], runner.pad_id)
    special = torch.zeros(suffix.shape, dtype=torch.bool)
    for row, (_r, (_seq, at)) in enumerate(chunk):
        if at is not None:
            special[row, at - p] = True
    start = time.perf_counter()
    sub_cache = _select(cache, runner.lm.model, [r for r, _key in chunk], p)
    # right padding needs no mask: a causal model's real positions never see later pads
    with runner._mean_embedding(special):
        out = runner.source.activations(suffix, [layer], units={layer: runner.index},
                                        cache=sub_cache)[layer].cpu()
    seconds = time.perf_counter() - start
    runner._charge([sorted(set(unique[key])) for _r, key in chunk],
                   [len(key[0]) - p for _r, key in chunk], suffix.shape[1], layer + 1, seconds)
    for row, (r, key) in enumerate(chunk):
        results[key] = torch.cat([base[r, :p], out[row, : len(key[0]) - p]])
