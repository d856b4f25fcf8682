"""The pure table code behind benchmarks/seed003.py (explain/compare.py)."""

from __future__ import annotations

import math

from neuron2graph.explain.compare import (
    correlation_rows,
    flatten,
    markdown,
    mean_rows,
    paired,
    ranks,
    spearman,
)


def _row(group: str, **metrics: float | None) -> dict:
    return {"group": group, "mode": "mix", "unit": "0:1",
            "metrics": {k.replace("__", "."): v for k, v in metrics.items()}}


def test_flatten_keeps_headline_metrics_and_marks_undefined_as_none() -> None:
    scores = {"methods": {
        "graph": {"detection": {"auroc": 0.75, "balanced_accuracy": 0.5, "f1": 0.3},
                  "simulation": {"pearson": None}},
        "sentence:tokens": {"text": "x", "embedding": {"auroc": float("nan")}},
    }}
    flat = flatten(scores)
    assert flat == {"graph.detection.auroc": 0.75, "graph.detection.balanced_accuracy": 0.5,
                    "graph.simulation.pearson": None, "sentence:tokens.embedding.auroc": None}


def test_ranks_average_ties() -> None:
    assert ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]


def test_spearman_is_rank_correlation() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 1000]) == 1.0
    assert math.isclose(spearman([1, 2, 3], [3, 2, 1]) or 0.0, -1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_paired_and_correlation_rows_drop_units_missing_either_metric() -> None:
    rows = [_row("a", x=0.1, y=1.0), _row("a", x=0.2, y=2.0), _row("b", x=0.3, y=None),
            _row("b", x=0.4, y=4.0)]
    assert paired(rows, "x", "y") == ([0.1, 0.2, 0.4], [1.0, 2.0, 4.0])
    (line,) = correlation_rows(rows, [("x", "y")])
    assert line[:3] == ["x", "y", "3"]
    assert line[4] == "1.000"
    assert correlation_rows(rows[:1], [("x", "y")])[0][2:] == ["1", "-", "-"]


def test_mean_rows_report_n_per_cell() -> None:
    rows = [_row("a", x=0.5, y=None), _row("a", x=1.0, y=2.0), _row("b", x=None)]
    lines = mean_rows(rows, "group", ["a", "b"], ["x", "y"])
    assert lines == [["a", "0.750 (n=2)", "2.000 (n=1)"], ["b", "- (n=0)", "- (n=0)"]]
    assert markdown(["g", "x"], [["a", "1"]]) == "| g | x |\n|---|---|\n| a | 1 |"
