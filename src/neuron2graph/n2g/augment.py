"""Augment: new prompts made by replacing each important token with likely substitutes.

Paper §3 used BERT fill-mask. No masked LM is available offline here, so the default
`CausalAugmenter` asks the *studied* model: candidates for position k are its next-token predictions
given tokens[:k], re-ranked by the log-probability of the whole prompt with the substitute in place.
`MaskedLMAugmenter` takes any Hugging Face fill-mask model and maps its predictions back to single
tokens of the studied model's tokenizer; a prediction that re-tokenises to more or fewer than one
token is skipped, so positions (and importances) stay aligned — the official code misaligns them.

Augmenters only propose prompts; the pipeline measures each new prompt's own activations and
importances.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from neuron2graph.errors import N2GError


@dataclass(frozen=True)
class AugmentConfig:
    n_substitutes: int = 5
    """At most this many substitutes per important position (paper: top n)."""
    min_prob: float = 0.01
    """A substitute must have at least this probability at its position."""
    importance_threshold: float = 0.75
    """Positions whose importance for the key token is >= this are replaced in turn."""
    n_candidates: int = 10
    """Next-token (or fill-mask) candidates per position, before re-ranking and filtering; each
    costs one full-depth forward of the prompt in the causal augmenter's re-ranking."""


@dataclass(frozen=True)
class AugmentItem:
    token_ids: list[int]
    positions: list[int]
    """Important positions to replace, one at a time."""


def important_positions(
    key_row: Sequence[float], key: int, threshold: float, *, skip_first: bool = False
) -> list[int]:
    """Positions k <= key whose importance for the key token is >= threshold."""
    start = 1 if skip_first else 0
    return [k for k in range(start, key + 1) if key_row[k] >= threshold]


class Augmenter(Protocol):
    def augment(self, items: Sequence[AugmentItem]) -> list[list[list[int]]]:
        """For each item, the new prompts (same length, one token replaced)."""
        ...


NextTokenFn = Callable[[Sequence[Sequence[int]], int], list[tuple[Any, Any, Any]]]
"""For each sequence: (top_ids [pos, k], top_logprobs [pos, k], token_logprobs [pos]) where row p
predicts token p+1 and token_logprobs[p] is the log-probability of token p (0 for p = 0)."""

ProposeFn = Callable[[Sequence[Sequence[int]], Sequence[Sequence[int]], int],
                     list[dict[int, tuple[list[int], list[float]]]]]
"""(sequences, positions p per sequence, k) -> per sequence {p: (top-k ids, log-probs)} of the
token at p + 1 (LayerRunner.propose: only the positions read, not the whole prompt's logits)."""

RerankFn = Callable[[Sequence[int], int, Sequence[int]], list[float]]
"""(prompt, position k, candidate ids) -> whole-prompt log-probability of each substitution, up to
a constant shared by the candidates (LayerRunner.rerank: the prefix runs once, KV-cached)."""

RerankManyFn = Callable[[Sequence[tuple[Sequence[int], int, Sequence[int]]]], list[list[float]]]
"""`RerankFn` for many (prompt, k, candidates) groups in one call (LayerRunner.rerank_many: a few
padded forwards instead of one model call per group, which dominated the augmenter's time)."""


class CausalAugmenter:
    """Substitutes proposed by the studied causal model (no extra model, batched)."""

    def __init__(
        self,
        next_tokens: NextTokenFn,
        config: AugmentConfig | None = None,
        *,
        exclude: Sequence[int] = (),
        rerank: RerankFn | None = None,
        rerank_many: RerankManyFn | None = None,
        propose: ProposeFn | None = None,
    ) -> None:
        self.next_tokens = next_tokens
        self.propose = propose
        """Preferred over `next_tokens` for the proposals when given: the same top-k, computed
        at the positions read only."""
        self.config = config or AugmentConfig()
        self.exclude = set(int(i) for i in exclude)
        self.rerank = rerank
        self.rerank_many = rerank_many
        """Preferred over `rerank` when given: same scores, all groups in one call."""

    def augment(self, items: Sequence[AugmentItem]) -> list[list[list[int]]]:
        cfg = self.config
        if not items or cfg.n_substitutes <= 0:
            return [[] for _ in items]
        proposals = self._proposals(items)
        # candidates[i][k] = ids proposed for position k of item i
        cand_prompts: list[list[int]] = []
        owners: list[tuple[int, int]] = []
        min_logp = math.log(cfg.min_prob) if cfg.min_prob > 0 else -math.inf
        for i, (item, props) in enumerate(zip(items, proposals, strict=True)):
            for k in item.positions:
                if k == 0:
                    continue  # no left context to predict from
                top_ids, top_logp = props[k - 1]
                for tid, lp in zip(top_ids, top_logp, strict=True):
                    if lp < min_logp or tid == item.token_ids[k] or tid in self.exclude:
                        continue
                    new = list(item.token_ids)
                    new[k] = int(tid)
                    cand_prompts.append(new)
                    owners.append((i, k))
        out: list[list[list[int]]] = [[] for _ in items]
        if not cand_prompts:
            return out
        ranked: dict[tuple[int, int], list[tuple[float, list[int]]]] = {}
        if self.rerank_many is not None or self.rerank is not None:  # per (prompt, position)
            groups: dict[tuple[int, int], list[list[int]]] = {}
            for prompt, owner in zip(cand_prompts, owners, strict=True):
                groups.setdefault(owner, []).append(prompt)
            requests = [(items[i].token_ids, k, [p[k] for p in prompts])
                        for (i, k), prompts in groups.items()]
            if self.rerank_many is not None:
                all_scores = self.rerank_many(requests)
            else:
                assert self.rerank is not None
                all_scores = [self.rerank(*req) for req in requests]
            for (owner, prompts), scores in zip(groups.items(), all_scores, strict=True):
                ranked[owner] = list(zip(scores, prompts, strict=True))
        else:
            scored = self.next_tokens(cand_prompts, 1)
            for prompt, owner, (_ti, _tl, tok_logp) in zip(cand_prompts, owners, scored,
                                                           strict=True):
                ranked.setdefault(owner, []).append((float(tok_logp.sum()), prompt))
        for (i, _k), options in ranked.items():
            options.sort(key=lambda t: -t[0])
            out[i].extend(p for _s, p in options[: cfg.n_substitutes])
        return out


    def _proposals(self, items: Sequence[AugmentItem]) -> list[dict[int, tuple[list[int],
                                                                            list[float]]]]:
        """Per item: {k - 1: (top ids, log-probs)} for each important position k >= 1."""
        n = self.config.n_candidates
        wanted = [sorted({k - 1 for k in it.positions if k > 0}) for it in items]
        if self.propose is not None:
            return self.propose([it.token_ids for it in items], wanted, n)
        # a prompt's positions after the last one read cannot change the proposals: cut there
        seqs = [it.token_ids[: w[-1] + 1] if w else it.token_ids[:1]
                for it, w in zip(items, wanted, strict=True)]
        stats = self.next_tokens(seqs, n)
        return [{p: (top_ids[p].tolist(), top_logp[p].tolist()) for p in w}
                for w, (top_ids, top_logp, _tok) in zip(wanted, stats, strict=True)]


class MaskedLMAugmenter:
    """Substitutes from any Hugging Face fill-mask model, mapped to the studied tokenizer."""

    def __init__(
        self,
        model: str | Any,
        studied_tokenizer: Any,
        config: AugmentConfig | None = None,
        *,
        mlm_tokenizer: Any | None = None,
        device: str = "cpu",
    ) -> None:
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        if isinstance(model, str):
            try:
                self.tokenizer = mlm_tokenizer or AutoTokenizer.from_pretrained(model)
                self.model = AutoModelForMaskedLM.from_pretrained(model)
            except OSError as exc:
                raise N2GError(
                    f"cannot load fill-mask model {model!r} ({exc.__class__.__name__}): pass a "
                    "local folder or a hub name reachable from here"
                ) from None
        else:
            if mlm_tokenizer is None:
                raise N2GError("a fill-mask model object needs its tokenizer: pass mlm_tokenizer=")
            self.model, self.tokenizer = model, mlm_tokenizer
        if getattr(self.tokenizer, "mask_token_id", None) is None:
            raise N2GError("the fill-mask tokenizer has no mask token: pick a masked LM (BERT...)")
        self.model.eval().to(device)
        self.device = device
        self.studied = studied_tokenizer
        self.config = config or AugmentConfig()

    def _texts(self, ids: list[int], k: int) -> str:
        left = self.studied.decode(ids[:k]).strip()
        right = self.studied.decode(ids[k + 1 :]).strip()
        return " ".join(x for x in (left, self.tokenizer.mask_token, right) if x)

    def _to_studied(self, word: str, original_piece: str) -> int | None:
        """The studied model's single token for `word`, keeping the original's leading space."""
        word = word.strip()
        if not word or word.startswith("##") or word in self.tokenizer.all_special_tokens:
            return None
        lead = original_piece[: len(original_piece) - len(original_piece.lstrip())]
        ids = self.studied.encode(lead + word, add_special_tokens=False)
        if len(ids) != 1 or ids[0] == getattr(self.studied, "unk_token_id", None):
            return None  # would shift positions, or is not in the studied vocabulary
        return int(ids[0])

    def augment(self, items: Sequence[AugmentItem]) -> list[list[list[int]]]:
        import torch

        cfg = self.config
        out: list[list[list[int]]] = [[] for _ in items]
        jobs = [(i, k) for i, it in enumerate(items) for k in it.positions]
        if not jobs or cfg.n_substitutes <= 0:
            return out
        texts = [self._texts(items[i].token_ids, k) for i, k in jobs]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True)
        enc = {key: v.to(self.device) for key, v in enc.items()}
        with torch.inference_mode():
            logits = self.model(**enc).logits.float()
        mask_id = self.tokenizer.mask_token_id
        for row, (i, k) in enumerate(jobs):
            where = (enc["input_ids"][row] == mask_id).nonzero()
            if len(where) == 0:  # truncated away
                continue
            probs = logits[row, int(where[0, 0])].softmax(-1)
            top = probs.topk(min(cfg.n_candidates, probs.numel()))
            original = items[i].token_ids[k]
            piece = self.studied.decode([original])
            seen: set[int] = set()
            for p, tid in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                if p < cfg.min_prob or len(seen) >= cfg.n_substitutes:
                    break
                sub = self._to_studied(str(self.tokenizer.convert_ids_to_tokens(int(tid))), piece)
                if sub is None or sub == original or sub in seen:
                    continue
                seen.add(sub)
                new = list(items[i].token_ids)
                new[k] = sub
                out[i].append(new)
        return out
