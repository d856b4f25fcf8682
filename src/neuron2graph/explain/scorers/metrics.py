"""Score formulas, small and exact, so tests can check them against hand-computed values.

Binary metrics (labels y in {0,1}, predictions p in {0,1}), with TP, FP, TN, FN counted as usual:

- precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2 TP / (2 TP + FP + FN);
- balanced accuracy = (TP / (TP + FN) + TN / (TN + FP)) / 2 (0.5 = chance, whatever the mix).

An undefined ratio (0/0) is reported as None, never as 0 or 1.

AUROC (scores s, labels y): the probability that a random positive scores above a random
negative, ties counting 1/2 — the Mann-Whitney U statistic divided by n_pos x n_neg. None when
either class is empty.

Pearson correlation of two series; None when either is constant (correlation undefined).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def _ratio(a: float, b: float) -> float | None:
    return None if b == 0 else a / b


def binary_metrics(labels: Sequence[int], preds: Sequence[int]) -> dict[str, Any]:
    tp = sum(1 for y, p in zip(labels, preds, strict=True) if y and p)
    fp = sum(1 for y, p in zip(labels, preds, strict=True) if not y and p)
    tn = sum(1 for y, p in zip(labels, preds, strict=True) if not y and not p)
    fn = sum(1 for y, p in zip(labels, preds, strict=True) if y and not p)
    tpr = _ratio(tp, tp + fn)
    tnr = _ratio(tn, tn + fp)
    return {
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "precision": _ratio(tp, tp + fp),
        "recall": tpr,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "balanced_accuracy": None if tpr is None or tnr is None else (tpr + tnr) / 2,
    }


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return None
    wins = 0.0
    for p in pos:
        for n in neg:
            wins += 1.0 if p > n else 0.5 if p == n else 0.0
    return wins / (len(pos) * len(neg))


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    if len(x) != len(y):
        raise ValueError(f"{len(x)} predictions but {len(y)} activations")
    n = len(x)
    if n < 2:
        return None
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def classification(scores: Sequence[float], labels: Sequence[int], cut: float) -> dict[str, Any]:
    """Binary metrics at `score >= cut` plus AUROC of the raw scores."""
    preds = [1 if s >= cut else 0 for s in scores]
    out = binary_metrics(labels, preds)
    out["auroc"] = auroc(scores, labels)
    out["n"] = len(labels)
    out["n_pos"] = sum(1 for y in labels if y)
    return out


__all__ = ["auroc", "binary_metrics", "classification", "pearson"]
