"""Log-probabilities of many prompts that share a prefix, the prefix computed once.

A judge's prompts for one explanation differ only in the example: the system text, the
explanation and the chat template's head are the same tokens in every prompt (about half of
them), and surprisal's texts all follow the same "Explanation: ...\\nText:" prefix. `logprobs`
runs the longest token prefix common to the rows once, repeats its KV cache over each batch,
runs only each row's suffix (right-padded) on it, and applies the LM head and log_softmax only
at the positions asked for (not at all 49k-vocabulary positions of every prompt, which used to
cost as much as the model body). The result equals a full forward of each row up to float
rounding (tests/unit/test_prefixlm.py checks both on a tiny random Llama).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float

from neuron2graph.models.hooks import cache_kwarg, cache_of

TOKEN_BUDGET = 4096
"""Suffix tokens (rows x width) per batch: bounds the activations' memory."""


def common_prefix(rows: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix every row shares."""
    if not rows:
        return 0
    first = rows[0]
    n = min(len(r) for r in rows)
    for i in range(n):
        t = first[i]
        if any(r[i] != t for r in rows):
            return i
    return n


def _accepts_logits_to_keep(model: Any) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


@torch.inference_mode()
def logprobs(
    model: Any, rows: Sequence[Sequence[int]], positions: Sequence[Sequence[int]], *,
    pad_id: int = 0, token_budget: int = TOKEN_BUDGET,
) -> list[Float[torch.Tensor, "n vocab"]]:
    """For each row, log_softmax of the logits at each of its `positions` (the distribution of
    the token after that position), as a float32 CPU tensor (len(positions[i]), vocab)."""
    if len(rows) != len(positions):
        raise ValueError("one list of positions per row")
    out: list[torch.Tensor | None] = [None] * len(rows)
    wanted = [i for i, p in enumerate(positions) if p]
    for i, p in enumerate(positions):
        if p and (min(p) < 0 or max(p) >= len(rows[i])):
            raise ValueError(f"position out of row {i} (length {len(rows[i])})")
    if not wanted:
        return [torch.zeros(0, 0) for _ in rows]
    cache_kw, keep_ok = cache_kwarg(model), _accepts_logits_to_keep(model)
    device = next(model.parameters()).device
    shared = min(common_prefix([rows[i] for i in wanted]),
                 min(min(positions[i]) for i in wanted))
    prefix_cache = None
    if shared > 0:
        pre = model(input_ids=torch.tensor([list(rows[wanted[0]][:shared])], device=device),
                    use_cache=True)
        prefix_cache = cache_of(pre)
    order = sorted(wanted, key=lambda i: len(rows[i]))
    start = 0
    while start < len(order):
        width = len(rows[order[start]]) - shared
        end = start + 1
        while end < len(order):
            w = len(rows[order[end]]) - shared
            if (end - start + 1) * max(w, width) > token_budget:
                break
            width = max(width, w)
            end += 1
        batch = order[start:end]
        start = end
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), shared + width), dtype=torch.long)
        mask[:, :shared] = 1
        for b, i in enumerate(batch):
            suffix = list(rows[i][shared:])
            ids[b, : len(suffix)] = torch.tensor(suffix)
            mask[b, shared : shared + len(suffix)] = 1
        keep = sorted({p - shared for i in batch for p in positions[i]})
        kwargs: dict[str, Any] = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(batch))
            kwargs.update({cache_kw: cache, "use_cache": True})
        else:
            kwargs["use_cache"] = False
        if keep_ok:
            kwargs["logits_to_keep"] = torch.tensor(keep, device=device)
            logits = model(**kwargs).logits
        else:
            logits = model(**kwargs).logits[:, keep]
        logp = logits.float().log_softmax(-1).cpu()
        column = {q: j for j, q in enumerate(keep)}
        for b, i in enumerate(batch):
            out[i] = logp[b, [column[p - shared] for p in positions[i]]]
    return [o if o is not None else torch.zeros(0, 0) for o in out]


__all__ = ["TOKEN_BUDGET", "common_prefix", "logprobs"]
