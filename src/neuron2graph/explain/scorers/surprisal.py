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


def mean_nll(model: Any, tokenizer: Any, pairs: Sequence[tuple[str, str]]) -> list[float]:
    """Mean NLL (nats/token) of each text given its prefix, texts tokenised on their own.

    Rows sharing a prefix (all of them, for one explanation) run it once (`prefixlm`), and the
    LM head runs only at the positions that predict a text token."""
    from neuron2graph.explain.prefixlm import logprobs

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    rows, spans = [], []
    for prefix, text in pairs:
        p = tokenizer.encode(prefix, add_special_tokens=False)
        t = tokenizer.encode(text, add_special_tokens=False)
        rows.append(bos + p + t)
        spans.append((len(bos) + len(p), len(t)))
    positions = [list(range(start - 1, start + n - 1)) if start > 0 else list(range(n - 1))
                 for start, n in spans]
    logp = logprobs(model, rows, positions, pad_id=int(pad))
    out: list[float] = []
    for row, (start, n), lp in zip(rows, spans, logp, strict=True):
        if n == 0 or lp.numel() == 0:
            out.append(0.0)
            continue
        first = start if start > 0 else 1
        target = row[first : start + n]
        picked = lp[range(len(target)), target]
        out.append(float(-picked.mean()))
    return out


def surprisal_score(model: Any, tokenizer: Any, explanation: str, ex: UnitExamples,
                    without: list[float] | None = None) -> dict[str, Any]:
    """`without`: the unit's NLL(x | "Text:") when already computed for another explanation
    (`baseline`), since it does not depend on the explanation."""
    texts = ["".join(c.tokens) for c in ex.scoring]
    labels = [int(c.activating) for c in ex.scoring]
    if without is None:
        without = baseline(model, tokenizer, ex)
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


def baseline(model: Any, tokenizer: Any, ex: UnitExamples) -> list[float]:
    """NLL(x | "Text:") of every scoring context: the same for every explanation of the unit."""
    return mean_nll(model, tokenizer, [(NEUTRAL, "".join(c.tokens)) for c in ex.scoring])


__all__ = ["baseline", "mean_nll", "surprisal_score"]
