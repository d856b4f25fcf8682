"""Surprisal scorer: does the explanation make activating contexts more predictable?

Under a base LM, for every scoring context x we take the mean negative log-likelihood of its
tokens after a neutral prefix, NLL(x | "Text:"), and after a prefix holding the explanation,
NLL(x | "Explanation: <e>\\nText:"). The gain is NLL_without - NLL_with (nats per token). A good
explanation helps on activating contexts more than on the others, so the unit's score is the
AUROC of the gain, activating (1) against negatives and hard negatives (0). Prompt log-probs are
computed in-process with transformers (never trusted from an HTTP endpoint: some servers return
them shifted by one position).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from neuron2graph.explain.examples import UnitExamples
from neuron2graph.explain.scorers.metrics import auroc

NEUTRAL = "Text:"
WITH = "Explanation: {explanation}\nText:"


def mean_nll(model: Any, tokenizer: Any, pairs: Sequence[tuple[str, str]],
             batch_size: int = 16) -> list[float]:
    """Mean NLL (nats/token) of each text given its prefix, texts tokenised on their own."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[float] = []
    device = next(model.parameters()).device
    for i in range(0, len(pairs), batch_size):
        rows, spans = [], []
        for prefix, text in pairs[i : i + batch_size]:
            p = tokenizer.encode(prefix, add_special_tokens=False)
            t = tokenizer.encode(text, add_special_tokens=False)
            bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
            rows.append(bos + p + t)
            spans.append((len(bos) + len(p), len(t)))
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, r in enumerate(rows):
            ids[j, : len(r)] = torch.tensor(r)
            mask[j, : len(r)] = 1
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        logp = torch.log_softmax(logits.float(), dim=-1)
        for j, (start, n) in enumerate(spans):
            if n == 0:
                out.append(0.0)
                continue
            pos = torch.arange(start, start + n)
            target = ids[j, pos].to(device)
            lp = logp[j, pos - 1].gather(-1, target[:, None])[:, 0]
            out.append(float(-lp.mean()))
    return out


def surprisal_score(model: Any, tokenizer: Any, explanation: str,
                    ex: UnitExamples) -> dict[str, Any]:
    texts = ["".join(c.tokens) for c in ex.scoring]
    labels = [int(c.activating) for c in ex.scoring]
    without = mean_nll(model, tokenizer, [(NEUTRAL, t) for t in texts])
    with_e = mean_nll(model, tokenizer,
                      [(WITH.format(explanation=explanation), t) for t in texts])
    gain = [a - b for a, b in zip(without, with_e, strict=True)]
    pos = [g for g, y in zip(gain, labels, strict=True) if y]
    neg = [g for g, y in zip(gain, labels, strict=True) if not y]
    return {
        "auroc": auroc(gain, labels), "n": len(labels), "n_pos": len(pos),
        "mean_gain_activating": sum(pos) / len(pos) if pos else None,
        "mean_gain_other": sum(neg) / len(neg) if neg else None,
    }


__all__ = ["mean_nll", "surprisal_score"]
