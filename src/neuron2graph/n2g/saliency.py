"""Saliency: how much each earlier token matters for the neuron's activation on a firing token.

Paper §3: `I[k, j] = 1 - a_masked_k[j] / a[j]`, token k replaced by a padding token. Fixes over the
official code: the mask is the *tokenizer's* pad token (the official code hard-codes id 1, a `"` in
GPT-2), configurable (`pad`, `unk`, `delete`, or `id:N`); all masked variants of a prompt form one
batch; only the rows that are used are computed: rows j for firing tokens (and the key token, which
augmentation needs). In a causal model masking k >= j cannot change a[j], so variant k is truncated
after the last needed row and only k <= last row is built.

Undefined cases are explicit: a row whose a[j] <= 0 gets importances 0 and is listed in
`undefined_rows`; NaN or inf activations raise `N2GError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from neuron2graph.errors import N2GError


@dataclass(frozen=True)
class Mask:
    """How saliency hides token k: replace it by `token_id`; delete it (`token_id` None); or, with
    `mean_embedding`, feed the mean of all input embeddings at k (no token at all). The last is
    not a token id, so variants carry the position in `SaliencyPlan.mean_at` and the runner swaps
    the embedding in (no sentinel id travels through token lists)."""

    token_id: int | None
    mean_embedding: bool = False

    @property
    def delete(self) -> bool:
        return self.token_id is None and not self.mean_embedding


DELETE = Mask(None)
MEAN_EMBEDDING = Mask(None, mean_embedding=True)

ActFn = Callable[[Sequence[Sequence[int]]], list[list[float]]]


@dataclass(frozen=True)
class SaliencyConfig:
    mask: str = "pad"
    """`pad` (the tokenizer's pad token), `unk`, `delete` (drop the token), `mean_embedding` (the
    mean of all input embeddings: no token at all), or `id:N`."""
    activation_threshold: float = 0.5
    """Rows are computed for tokens whose normalised activation a/a_max is at least this."""
    mask_first: bool = False
    """Also mask a leading BOS token (off: the BOS is structure, not content)."""


def resolve_mask(tokenizer: Any, mask: str) -> Mask:
    """The `Mask` a `--mask` name stands for. Raises when the tokenizer lacks the token."""
    if mask == "delete":
        return DELETE
    if mask == "mean_embedding":
        return MEAN_EMBEDDING
    if mask.startswith("id:"):
        try:
            return Mask(int(mask[3:]))
        except ValueError:
            raise N2GError(f"bad mask {mask!r}: write id:N with an integer token id") from None
    if mask in ("pad", "unk"):
        value = getattr(tokenizer, f"{mask}_token_id", None)
        if value is None and mask == "pad":
            value = getattr(tokenizer, "eos_token_id", None)  # common: pad is unset, eos stands in
        if value is None:
            raise N2GError(
                f"the tokenizer has no {mask} token: pass --mask unk, delete or id:N instead"
            )
        return Mask(int(value))
    raise N2GError(f"unknown mask {mask!r}: use pad, unk, delete, mean_embedding or id:N")


def activating_positions(acts: Sequence[float], a_max: float, threshold: float) -> list[int]:
    """Positions whose normalised activation a/a_max is >= threshold (none when a_max <= 0)."""
    if a_max <= 0 or not math.isfinite(a_max):
        return []
    return [i for i, a in enumerate(acts) if a / a_max >= threshold]


@dataclass
class SaliencyPlan:
    """The masked variants of one prompt and how to read importances back from them."""

    token_ids: list[int]
    acts: list[float]
    rows: list[int]
    """Positions j whose importance rows are wanted, ascending."""
    masked: list[int] = field(default_factory=list)
    """Position k masked in each variant."""
    variants: list[list[int]] = field(default_factory=list)
    mean_at: list[int | None] = field(default_factory=list)
    """Per variant: the position fed the mean input embedding (mean_embedding masks), else None."""
    delete: bool = False


def _as_mask(mask: Mask | int | None) -> Mask:
    return mask if isinstance(mask, Mask) else Mask(mask)


def plan_saliency(
    token_ids: Sequence[int],
    acts: Sequence[float],
    rows: Sequence[int],
    mask: Mask | int | None,
    *,
    skip_first: bool = False,
) -> SaliencyPlan:
    """Build the masked variants needed for importance rows `rows` (an int mask is a token id,
    None deletes)."""
    mask = _as_mask(mask)
    ids = list(token_ids)
    wanted = sorted(set(rows))
    plan = SaliencyPlan(ids, [float(a) for a in acts], wanted, delete=mask.delete)
    if not wanted:
        return plan
    last = wanted[-1]
    for k in range(1 if skip_first else 0, last + 1):
        if mask.delete:
            variant = ids[:k] + ids[k + 1 : last + 1]
            if not variant:  # deleting the only token leaves nothing to run
                continue
        else:
            variant = ids[: last + 1]
            if mask.token_id is not None:
                variant[k] = mask.token_id
        plan.masked.append(k)
        plan.variants.append(variant)
        plan.mean_at.append(k if mask.mean_embedding else None)
    return plan


@dataclass
class Importances:
    rows: dict[int, list[float]]
    """rows[j][k] = importance of token k for the activation on token j (0 for k > j)."""
    undefined_rows: list[int]
    """Rows whose own activation is <= 0, where the ratio is undefined (all set to 0)."""


def finish_saliency(plan: SaliencyPlan, variant_acts: Sequence[Sequence[float]]) -> Importances:
    """Importance rows from the activations of the plan's variants (one list per variant)."""
    if len(variant_acts) != len(plan.variants):
        raise ValueError("finish_saliency needs one activation list per variant")
    n = len(plan.token_ids)
    out: dict[int, list[float]] = {}
    undefined: list[int] = []
    for j in plan.rows:
        row = [0.0] * n
        a_j = plan.acts[j]
        if not math.isfinite(a_j):
            raise N2GError("activation is NaN or inf: check the model weights and dtype (try fp32)")
        if a_j <= 0:
            undefined.append(j)
            out[j] = row
            continue
        for k, acts in zip(plan.masked, variant_acts, strict=True):
            if k > j:
                continue
            if plan.delete:
                if k == j:
                    continue  # the token itself is gone: no activation to compare
                masked = acts[j - 1]
            else:
                masked = acts[j]
            if not math.isfinite(masked):
                raise N2GError("masked activation is NaN or inf: check the model weights/dtype")
            row[k] = 1.0 - masked / a_j
        out[j] = row
    return Importances(out, undefined)


def saliency(
    token_ids: Sequence[int],
    acts: Sequence[float],
    rows: Sequence[int],
    act_fn: ActFn,
    mask: Mask | int | None,
    *,
    skip_first: bool = False,
) -> Importances:
    """Importance rows of one prompt, with all masked variants in one `act_fn` call (token
    masks only: a plain `act_fn` takes token ids, so it cannot be fed a mean embedding)."""
    if _as_mask(mask).mean_embedding:
        raise N2GError("saliency() takes token masks only: run mean_embedding masks through "
                       "plan_saliency and LayerRunner.acts(..., mean_at=plan.mean_at)")
    plan = plan_saliency(token_ids, acts, rows, mask, skip_first=skip_first)
    return finish_saliency(plan, act_fn(plan.variants) if plan.variants else [])
