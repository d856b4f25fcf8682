"""Intervention scorer: does steering the unit move the model's predictions toward the words of
the explanation?

Why this formula (docs/explain.md): the other scorers ask whether an explanation says *when* a
unit fires; this one asks whether it says what the unit *does*, with the studied model itself
and no judge, so it scores every explanation (LLM sentences, graph-written sentences, token
lists) on one scale and costs two forward passes per context.

For a unit with recorded max activation a_max and held-out contexts C (its non-activating
scoring contexts, negatives and hard negatives, which no explainer saw; the activating test
contexts when it has none; at most `max_contexts`):

1. Steer: the unit is set to `strength x a_max` at every position through the run's unit source
   (`ActivationSource.clamped`: MLP neurons are clamped, SAE latents add `value x W_dec[i]`).
2. Shift: for every position p of every context, d_p(t) = log p_steered(t | prefix) -
   log p_base(t | prefix) over the whole vocabulary; D(t) is its mean over positions.
3. The explanation's tokens E: the studied tokenizer's ids of its backtick-quoted pieces and of
   each of its words (with and without a leading space), special and unknown ids dropped.
4. Score: `auroc` = P(D(e) > D(t)) for e in E, t outside E (ties count 1/2): 1.0 when steering
   promotes the explanation's tokens above every other token, 0.5 when it ignores them. Also
   `shift` = mean D over E minus mean D over the vocabulary (nats), `kl` = mean over positions
   of KL(p_steered || p_base) (how much steering changes anything), and the most promoted pieces.

`failed` counts contexts whose steered or base log-probs were not finite (skipped) and
explanations with no token in the studied vocabulary (no score).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from neuron2graph.explain.examples import Context, UnitExamples
from neuron2graph.ids import NeuronId, UnitId

QUOTED = re.compile(r"`([^`]+)`")
WORD = re.compile(r"\w+")


@dataclass
class Effect:
    """What steering one unit does, averaged over its held-out contexts."""

    shift: Tensor
    """D(t): mean log-prob change of every vocabulary token (float32, on the CPU)."""
    kl: float
    n_contexts: int
    n_positions: int
    failed: int
    value: float


def explanation_ids(tokenizer: Any, text: str) -> list[int]:
    """The explanation's tokens in the studied tokenizer (see the module docstring, step 3)."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    unk = getattr(tokenizer, "unk_token_id", None)
    pieces = QUOTED.findall(text)
    words = WORD.findall(text)
    ids: set[int] = set()
    for piece in [*pieces, *words, *(" " + w for w in words)]:
        ids.update(tokenizer.encode(piece, add_special_tokens=False))
    return sorted(i for i in ids if i not in special and i != unk)


def rank_auroc(values: Tensor, positives: list[int]) -> float:
    """P(values[e] > values[t]) for e in `positives`, t elsewhere (ties 1/2)."""
    mask = torch.zeros(values.numel(), dtype=torch.bool)
    mask[positives] = True
    neg = torch.sort(values[~mask]).values
    pos = values[mask]
    below = torch.searchsorted(neg, pos, right=False).double()
    upto = torch.searchsorted(neg, pos, right=True).double()
    return float(((below + upto) / 2).mean() / max(1, neg.numel()))


class InterventionScorer:
    """Steers units of the run's model; the effect of a unit is computed once and cached."""

    def __init__(self, lm: Any, source: Any, *, strength: float = 4.0, max_contexts: int = 16,
                 batch_size: int = 8) -> None:
        self.lm = lm
        self.source = source
        self.strength = strength
        self.max_contexts = max_contexts
        self.batch_size = max(1, batch_size)
        self._effects: dict[str, Effect] = {}

    def contexts(self, ex: UnitExamples) -> list[Context]:
        held_out = (ex.negative + ex.hard_negative) or ex.test
        return [c for c in held_out if c.token_ids][: self.max_contexts]

    @torch.inference_mode()
    def _logp(self, ids: Tensor, mask: Tensor) -> Tensor:
        out = self.lm.model(input_ids=ids.to(self.lm.device),
                            attention_mask=mask.to(self.lm.device), use_cache=False)
        return torch.log_softmax(out.logits.float(), dim=-1).cpu()

    def effect(self, ex: UnitExamples) -> Effect:
        if ex.unit in self._effects:
            return self._effects[ex.unit]
        nid = NeuronId.parse(ex.unit)
        unit = UnitId(nid.layer, nid.neuron, self.source.site)
        self.source.check(unit)
        value = self.strength * ex.a_max
        tok = self.lm.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        total: Tensor | None = None
        kl = 0.0
        n_pos = n_ctx = failed = 0
        ctxs = self.contexts(ex)
        for i in range(0, len(ctxs), self.batch_size):
            batch = ctxs[i : i + self.batch_size]
            width = max(len(c.token_ids) for c in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for j, c in enumerate(batch):
                ids[j, : len(c.token_ids)] = torch.tensor(c.token_ids)
                mask[j, : len(c.token_ids)] = 1
            base = self._logp(ids, mask)
            with self.source.clamped(unit, value):
                steered = self._logp(ids, mask)
            for j, c in enumerate(batch):
                b, s = base[j, : len(c.token_ids)], steered[j, : len(c.token_ids)]
                if not (torch.isfinite(b).all() and torch.isfinite(s).all()):
                    failed += 1
                    continue
                d = s - b
                total = d.sum(0) if total is None else total + d.sum(0)
                kl += float((s.exp() * d).sum())
                n_pos += d.shape[0]
                n_ctx += 1
        vocab = int(base.shape[-1]) if ctxs else 0
        shift = total / n_pos if total is not None else torch.zeros(vocab)
        eff = Effect(shift=shift, kl=kl / n_pos if n_pos else 0.0, n_contexts=n_ctx,
                     n_positions=n_pos, failed=failed, value=value)
        self._effects = {ex.unit: eff}  # one unit at a time: keep memory at one vocab vector
        return eff

    def score(self, ex: UnitExamples, explanation: str) -> dict[str, Any]:
        eff = self.effect(ex)
        ids = [i for i in explanation_ids(self.lm.tokenizer, explanation)
               if i < eff.shift.numel()]
        out: dict[str, Any] = {"n": eff.n_contexts, "positions": eff.n_positions,
                               "strength": self.strength, "value": eff.value,
                               "kl": eff.kl, "failed": eff.failed, "n_tokens": len(ids)}
        if not ids or eff.n_positions == 0 or len(ids) >= eff.shift.numel():
            out.update(auroc=None, shift=None, failed=eff.failed + 1,
                       error="no context to steer" if eff.n_positions == 0 else
                       "no token of the explanation is in the model's vocabulary")
            return out
        d = eff.shift
        top = torch.topk(d, min(5, d.numel())).indices.tolist()
        out.update(auroc=rank_auroc(d, ids), shift=float(d[ids].mean() - d.mean()),
                   promoted=[self.lm.tokenizer.decode([t]) for t in top])
        return out


__all__ = ["Effect", "InterventionScorer", "explanation_ids", "rank_auroc"]
