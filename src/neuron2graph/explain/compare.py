"""Tables that compare scorers and explanation settings across units (seed 003's measurements).

Why a module: `benchmarks/seed003.py` reproduces three of seed 003's (delphi's) analyses on our
units — how well scorers agree across units, how the train sampling changes explanations, and
trained SAE latents against neurons and random latents. The arithmetic (flattening a unit's
scores file, pairing two metrics over units, rank correlation, means with their n, markdown) is
pure and tested here (tests/unit/test_explain_compare.py); the benchmark only runs models.

A *row* is one scored unit under one setting: `{"group": ..., "mode": ..., "unit": ...,
"metrics": {"token.detection.auroc": 0.7, ...}}`, metric names `method.scorer.metric` as in a
unit's scores file (`explain/scoring.py`). A missing or undefined value is None and is left out
of every mean and correlation, so each cell says its own n.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from neuron2graph.explain.scorers.metrics import pearson
from neuron2graph.explain.storage import KEYS

Row = dict[str, Any]


def flatten(scores: dict[str, Any]) -> dict[str, float | None]:
    """`method.scorer.metric` -> value for the headline metrics of one unit's scores."""
    out: dict[str, float | None] = {}
    for method, entry in scores.get("methods", {}).items():
        for scorer, metric in KEYS:
            part = entry.get(scorer)
            if isinstance(part, dict) and metric in part:
                value = part[metric]
                ok = value is not None and math.isfinite(float(value))
                out[f"{method}.{scorer}.{metric}"] = float(value) if ok else None
    return out


def paired(rows: Sequence[Row], x: str, y: str) -> tuple[list[float], list[float]]:
    """The values of metrics x and y over the rows where both are defined."""
    xs, ys = [], []
    for row in rows:
        a, b = row["metrics"].get(x), row["metrics"].get(y)
        if a is not None and b is not None:
            xs.append(float(a))
            ys.append(float(b))
    return xs, ys


def ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties given their mean rank (as Spearman's rho needs)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho: Pearson's r of the ranks (None when either side is constant)."""
    return pearson(ranks(x), ranks(y))


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def correlation_rows(rows: Sequence[Row], pairs: Sequence[tuple[str, str]]) -> list[list[str]]:
    """[x, y, n, Pearson r, Spearman rho] per pair of metrics, over units where both exist."""
    out = []
    for x, y in pairs:
        xs, ys = paired(rows, x, y)
        out.append([x, y, str(len(xs)), fmt(pearson(xs, ys)), fmt(spearman(xs, ys))])
    return out


def mean_rows(rows: Sequence[Row], key: str, order: Sequence[str],
              metrics: Sequence[str]) -> list[list[str]]:
    """One line per value of `key` (in `order`): the mean of each metric with its n."""
    out = []
    for value in order:
        line = [value]
        for metric in metrics:
            vals = [float(v) for r in rows if r[key] == value
                    if (v := r["metrics"].get(metric)) is not None]
            line.append(f"{sum(vals) / len(vals):.3f} (n={len(vals)})" if vals else "- (n=0)")
        out.append(line)
    return out


def markdown(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(line) + " |" for line in lines)])


__all__ = ["correlation_rows", "flatten", "fmt", "markdown", "mean_rows", "paired", "ranks",
           "spearman"]
