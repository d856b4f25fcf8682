"""Token-level scores of a predictor against a neuron's real activations (paper §4, done honestly).

A token *fires* when its normalised activation `a / a_max` is at least `threshold` (0.5, the
paper's value); predictions are thresholded the same way. Firing and non-firing tokens are scored
separately because the problem is heavily imbalanced: predicting "never fires" already gets
near-perfect non-firing scores.

Undefined values stay undefined. Precision with no predicted positive, recall with no real positive
and a Pearson correlation with a constant side are `None` here (NaN in arrays), and aggregates
report how many neurons were undefined for each metric instead of forcing a value. The official
code sets undefined precision to 1.0, which rewards a graph that never fires; `as_official` in the
layer aggregate reproduces that convention only so that figures can be put next to the paper's.

F1 is `2 TP / (2 TP + FP + FN)`: equal to the harmonic mean of precision and recall whenever both
are defined, 0 when there is something to find or something wrongly predicted but no hit, and
undefined only when there is neither a real nor a predicted positive.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from jaxtyping import Float

THRESHOLD = 0.5

METRICS = (
    "precision_firing",
    "recall_firing",
    "f1_firing",
    "precision_nonfiring",
    "recall_nonfiring",
    "f1_nonfiring",
    "pearson",
)
"""Per-neuron metric names, in table order (the paper's Table 1 plus Pearson)."""


@dataclass(frozen=True)
class ClassScores:
    """Precision / recall / F1 for one class, with the counts they come from."""

    tp: int
    fp: int
    fn: int
    precision: float | None
    recall: float | None
    f1: float | None


@dataclass(frozen=True)
class TokenScores:
    """Every score of one predictor on one neuron's test tokens."""

    n_tokens: int
    n_real_firing: int
    n_pred_firing: int
    precision_firing: float | None
    recall_firing: float | None
    f1_firing: float | None
    precision_nonfiring: float | None
    recall_nonfiring: float | None
    f1_nonfiring: float | None
    pearson: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def class_scores(real: np.ndarray, pred: np.ndarray) -> ClassScores:
    """Scores of boolean predictions `pred` for the boolean target `real` (the positive class)."""
    tp = int(np.count_nonzero(real & pred))
    fp = int(np.count_nonzero(~real & pred))
    fn = int(np.count_nonzero(real & ~pred))
    return ClassScores(
        tp=tp,
        fp=fp,
        fn=fn,
        precision=_ratio(tp, tp + fp),
        recall=_ratio(tp, tp + fn),
        f1=_ratio(2 * tp, 2 * tp + fp + fn),
    )


def pearson(x: Float[np.ndarray, " n"], y: Float[np.ndarray, " n"]) -> float | None:
    """Pearson correlation, or None when either side is constant (or there are < 2 values)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size < 2:
        return None
    dx = x - x.mean()
    dy = y - y.mean()
    sx = math.sqrt(float(dx @ dx))
    sy = math.sqrt(float(dy @ dy))
    # Relative tolerance: a side whose spread is pure rounding noise counts as constant.
    if sx <= 1e-12 * max(1.0, float(np.abs(x).max())) or sy <= 1e-12 * max(
        1.0, float(np.abs(y).max())
    ):
        return None
    r = float(dx @ dy) / (sx * sy)
    return max(-1.0, min(1.0, r))


def _flat(values: Sequence[float] | Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Accept one sequence of tokens or a list of examples (pooled, as the paper does)."""
    if isinstance(values, np.ndarray):
        return values.astype(np.float64).reshape(-1)
    items = list(values)
    if items and isinstance(items[0], Sequence | np.ndarray):
        parts = [np.asarray(v, dtype=np.float64).reshape(-1) for v in items]
        return np.concatenate(parts) if parts else np.zeros(0)
    return np.asarray(items, dtype=np.float64).reshape(-1)


def score_tokens(
    real: Sequence[float] | Sequence[Sequence[float]] | np.ndarray,
    pred: Sequence[float] | Sequence[Sequence[float]] | np.ndarray,
    *,
    threshold: float = THRESHOLD,
) -> TokenScores:
    """Score predicted against real *normalised* activations, pooled over all given tokens.

    Both arguments are either flat per-token values or per-example lists (pooled). Non-finite
    values are a bug upstream, so they raise instead of being scored.
    """
    r = _flat(real)
    p = _flat(pred)
    if r.shape != p.shape:
        raise ValueError(f"real has {r.size} tokens but pred has {p.size}")
    if not (np.isfinite(r).all() and np.isfinite(p).all()):
        raise ValueError("non-finite activation in real or predicted values")
    real_fire = r >= threshold
    pred_fire = p >= threshold
    firing = class_scores(real_fire, pred_fire)
    nonfiring = class_scores(~real_fire, ~pred_fire)
    return TokenScores(
        n_tokens=int(r.size),
        n_real_firing=int(np.count_nonzero(real_fire)),
        n_pred_firing=int(np.count_nonzero(pred_fire)),
        precision_firing=firing.precision,
        recall_firing=firing.recall,
        f1_firing=firing.f1,
        precision_nonfiring=nonfiring.precision,
        recall_nonfiring=nonfiring.recall,
        f1_nonfiring=nonfiring.f1,
        pearson=pearson(r, p),
    )


@dataclass(frozen=True)
class FalseFiring:
    """How often a predictor fires on ordinary text where the real neuron does not."""

    n_tokens: int
    n_real_nonfiring: int
    n_false_firing: int
    rate: float | None
    """n_false_firing / n_real_nonfiring (None when the neuron fires on every token)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def false_firing(
    real: Sequence[float] | Sequence[Sequence[float]] | np.ndarray,
    pred: Sequence[float] | Sequence[Sequence[float]] | np.ndarray,
    *,
    threshold: float = THRESHOLD,
) -> FalseFiring:
    """The false-firing rate: predicted fire among tokens where the real neuron does not fire."""
    r = _flat(real)
    p = _flat(pred)
    if r.shape != p.shape:
        raise ValueError(f"real has {r.size} tokens but pred has {p.size}")
    quiet = r < threshold
    wrong = int(np.count_nonzero(quiet & (p >= threshold)))
    n_quiet = int(np.count_nonzero(quiet))
    return FalseFiring(
        n_tokens=int(r.size), n_real_nonfiring=n_quiet, n_false_firing=wrong,
        rate=_ratio(wrong, n_quiet),
    )


@dataclass(frozen=True)
class Aggregate:
    """A metric averaged over the neurons of a layer where it is defined."""

    mean: float | None
    """Mean over neurons where the metric is defined (None when it is defined for none)."""
    n: int
    """Neurons where it is defined."""
    n_undefined: int
    as_official: float | None
    """Mean with undefined values counted as 1.0 (the official convention; comparison only)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def aggregate(values: Iterable[float | None]) -> Aggregate:
    """Mean over defined values (None and NaN are undefined), with the undefined count."""
    vals = list(values)
    defined = [float(v) for v in vals if v is not None and not math.isnan(float(v))]
    n_undef = len(vals) - len(defined)
    mean = sum(defined) / len(defined) if defined else None
    official = (sum(defined) + n_undef) / len(vals) if vals else None
    return Aggregate(mean=mean, n=len(defined), n_undefined=n_undef, as_official=official)


def aggregate_rows(
    rows: Iterable[Mapping[str, Any]], metrics: Sequence[str] = METRICS
) -> dict[str, Aggregate]:
    """Aggregate each named metric over per-neuron rows (dicts holding the metric keys)."""
    rows = list(rows)
    return {m: aggregate(row.get(m) for row in rows) for m in metrics}


__all__ = [
    "METRICS",
    "THRESHOLD",
    "Aggregate",
    "ClassScores",
    "FalseFiring",
    "TokenScores",
    "aggregate",
    "aggregate_rows",
    "class_scores",
    "false_firing",
    "pearson",
    "score_tokens",
]
