"""Scorer formulas against hand-computed values."""

from __future__ import annotations

import pytest

from neuron2graph.explain.scorers.metrics import auroc, binary_metrics, classification, pearson


def test_binary_metrics_by_hand() -> None:
    # labels 1 1 1 0 0, preds 1 0 1 1 0: TP=2 FN=1 FP=1 TN=1
    m = binary_metrics([1, 1, 1, 0, 0], [1, 0, 1, 1, 0])
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (2, 1, 1, 1)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_undefined_ratios_are_none() -> None:
    m = binary_metrics([1, 1], [0, 0])
    assert m["precision"] is None and m["balanced_accuracy"] is None and m["f1"] == 0.0


def test_auroc_by_hand_with_ties() -> None:
    # positives 0.9, 0.4; negatives 0.4, 0.1: pairs (0.9>0.4) (0.9>0.1) (0.4=0.4 -> 1/2) (0.4>0.1)
    assert auroc([0.9, 0.4, 0.4, 0.1], [1, 1, 0, 0]) == pytest.approx(3.5 / 4)
    assert auroc([0.1, 0.9], [1, 0]) == 0.0
    assert auroc([0.1], [1]) is None


def test_pearson_by_hand() -> None:
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # x = 0 0 1 1, y = 0 1 0 1: cov 0 -> r 0
    assert pearson([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0)
    assert pearson([1, 1, 1], [1, 2, 3]) is None


def test_classification_cut() -> None:
    out = classification([0.2, 0.6, 0.5], [0, 1, 1], 0.5)
    assert out["tp"] == 2 and out["fp"] == 0 and out["auroc"] == 1.0 and out["n_pos"] == 2
