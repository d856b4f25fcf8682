"""The causal augmenter's next-token proposals, computed only where they are read.

`LayerRunner.next_tokens` returns the top-k next tokens at *every* position of every prompt,
through the LM head and a log_softmax over the whole vocabulary (49k rows for SmolLM2) at each
one. The augmenter reads only the positions k - 1 that predict an important position k, and
nothing after the last of them. `propose` runs each prompt only up to its last wanted position
(the base model, full depth: a causal model's earlier positions do not see the rest) and applies
the LM head, log_softmax and top-k to the wanted positions only. The proposals are those of
`next_tokens` at the same positions (tests/integration/test_n2g_rerank.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from neuron2graph.models.forward import pad_batch

if TYPE_CHECKING:
    from neuron2graph.n2g.runner import LayerRunner

Proposals = dict[int, tuple[list[int], list[float]]]
"""Per prompt: {position p: (top ids, their log-probs)} for the token at p + 1."""


@torch.inference_mode()
def propose(runner: LayerRunner, sequences: Sequence[Sequence[int]],
            at: Sequence[Sequence[int]], k: int) -> list[Proposals]:
    """Top-`k` next tokens of `sequences[i]` after each position in `at[i]` (charged like
    `next_tokens`: inside `runner.shared(...)` the bill is split between neurons)."""
    from neuron2graph.n2g.runner import _batches

    lm = runner.lm
    model: Any = lm.model
    base: Any = model.base_model
    head: Any = model.get_output_embeddings()
    cap = getattr(getattr(model, "config", None), "final_logit_softcapping", None)
    out: list[Proposals] = [{} for _ in sequences]
    todo = [i for i in range(len(sequences)) if at[i]]
    cut = {i: list(sequences[i][: max(at[i]) + 1]) for i in todo}
    order = sorted(todo, key=lambda i: len(cut[i]))
    head_rows = max(1, 4_000_000 // max(1, runner._vocab()))
    for batch in _batches([len(cut[i]) for i in order], runner.max_batch_tokens,
                          runner.max_rows, max_waste=0.1):
        idx = [order[b] for b in batch]
        ids, mask = pad_batch([cut[i] for i in idx], runner.pad_id)
        start = time.perf_counter()
        hidden = base(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device),
                      use_cache=False).last_hidden_state
        pairs = [(row, p) for row, i in enumerate(idx) for p in sorted(set(at[i]))]
        rsel = torch.as_tensor([r for r, _p in pairs], dtype=torch.long, device=hidden.device)
        psel = torch.as_tensor([p for _r, p in pairs], dtype=torch.long, device=hidden.device)
        picked = hidden[rsel, psel]
        top_ids: list[list[int]] = []
        top_logp: list[list[float]] = []
        for a in range(0, len(pairs), head_rows):
            logits = head(picked[a : a + head_rows]).float()
            if cap:
                logits = torch.tanh(logits / cap) * cap
            top = logits.log_softmax(-1).topk(k, dim=-1)
            top_ids += top.indices.cpu().tolist()
            top_logp += top.values.cpu().tolist()
        seconds = time.perf_counter() - start
        owners: list[list[int]] = [[0] for _ in idx] if runner._shared is None else [
            [] for _ in idx]
        runner._charge(owners, [len(cut[i]) for i in idx], ids.shape[1], lm.n_layers, seconds)
        for (row, p), t_ids, t_lp in zip(pairs, top_ids, top_logp, strict=True):
            out[idx[row]][p] = (t_ids, t_lp)
    return out
