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

MEAN_EMBEDDING = -1
"""Sentinel id for the `mean_embedding` mask (the pipeline's runner feeds the mean embedding)."""

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


def resolve_mask_id(tokenizer: Any, mask: str) -> int | None:
    """The token id used for masking, or None for `delete`. Raises when the tokenizer lacks it."""
    if mask == "delete":
        return None
    if mask == "mean_embedding":
        return MEAN_EMBEDDING
    if mask.startswith("id:"):
        try:
            return int(mask[3:])
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
        return int(value)
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
    delete: bool = False


def plan_saliency(
    token_ids: Sequence[int],
    acts: Sequence[float],
    rows: Sequence[int],
    mask_id: int | None,
    *,
    skip_first: bool = False,
) -> SaliencyPlan:
    """Build the masked variants needed for importance rows `rows` (mask_id None = delete)."""
    ids = list(token_ids)
    wanted = sorted(set(rows))
    plan = SaliencyPlan(ids, [float(a) for a in acts], wanted, delete=mask_id is None)
    if not wanted:
        return plan
    last = wanted[-1]
    for k in range(1 if skip_first else 0, last + 1):
        if mask_id is None:
            variant = ids[:k] + ids[k + 1 : last + 1]
            if not variant:  # deleting the only token leaves nothing to run
                continue
        else:
            variant = ids[: last + 1]
            variant[k] = mask_id
        plan.masked.append(k)
        plan.variants.append(variant)
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
    mask_id: int | None,
    *,
    skip_first: bool = False,
) -> Importances:
    """Importance rows of one prompt, with all masked variants in one `act_fn` call."""
    plan = plan_saliency(token_ids, acts, rows, mask_id, skip_first=skip_first)
    return finish_saliency(plan, act_fn(plan.variants) if plan.variants else [])
