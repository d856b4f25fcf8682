"""The evaluation metrics on hand-computed cases (no model)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neuron2graph.evaluate.metrics import (
    aggregate,
    aggregate_rows,
    false_firing,
    pearson,
    score_tokens,
)


def test_small_case_by_hand() -> None:
    # real fires on 0, 1, 4 (0.5 counts: threshold is inclusive); pred fires on 0, 2, 4.
    s = score_tokens([1.0, 0.6, 0.2, 0.0, 0.5], [0.9, 0.0, 0.7, 0.0, 0.5])
    assert (s.n_tokens, s.n_real_firing, s.n_pred_firing) == (5, 3, 3)
    assert s.precision_firing == pytest.approx(2 / 3)
    assert s.recall_firing == pytest.approx(2 / 3)
    assert s.f1_firing == pytest.approx(2 / 3)
    # Non-firing as the positive class: TP = token 3, FP = token 1, FN = token 2.
    assert s.precision_nonfiring == pytest.approx(0.5)
    assert s.recall_nonfiring == pytest.approx(0.5)
    assert s.f1_nonfiring == pytest.approx(0.5)


def test_heavily_imbalanced_case() -> None:
    real = np.zeros(1000)
    real[[10, 500]] = [1.0, 0.8]
    pred = np.zeros(1000)
    pred[[10, 20, 30, 40]] = 0.7  # one hit, three false firings, one miss (500)
    s = score_tokens(real, pred)
    assert s.precision_firing == pytest.approx(1 / 4)
    assert s.recall_firing == pytest.approx(1 / 2)
    assert s.f1_firing == pytest.approx(2 / (2 + 3 + 1))
    assert s.precision_nonfiring == pytest.approx(995 / 996)
    assert s.recall_nonfiring == pytest.approx(995 / 998)
    assert s.f1_nonfiring == pytest.approx(1990 / 1994)


def test_never_firing_predictor_gets_undefined_precision_not_one() -> None:
    real = np.zeros(1000)
    real[[10, 500]] = 1.0
    s = score_tokens(real, np.zeros(1000))
    assert s.precision_firing is None  # the official code would say 1.0
    assert s.recall_firing == 0.0
    assert s.f1_firing == 0.0
    assert s.precision_nonfiring == pytest.approx(998 / 1000)
    assert s.recall_nonfiring == 1.0
    assert s.f1_nonfiring == pytest.approx(1996 / 1998)
    assert s.pearson is None  # constant prediction


def test_test_set_with_no_firing_token() -> None:
    real = [0.1, 0.4, 0.0, 0.49]
    quiet = score_tokens(real, [0.0, 0.0, 0.0, 0.0])
    assert quiet.n_real_firing == 0
    assert quiet.precision_firing is None
    assert quiet.recall_firing is None
    assert quiet.f1_firing is None
    assert (quiet.precision_nonfiring, quiet.recall_nonfiring, quiet.f1_nonfiring) == (1, 1, 1)
    noisy = score_tokens(real, [0.0, 0.9, 0.0, 0.0])
    assert noisy.precision_firing == 0.0
    assert noisy.recall_firing is None
    assert noisy.f1_firing == 0.0
    assert noisy.precision_nonfiring == 1.0
    assert noisy.recall_nonfiring == pytest.approx(3 / 4)


def test_examples_are_pooled() -> None:
    a = score_tokens([[1.0, 0.0], [0.0, 0.7, 0.2]], [[1.0, 0.6], [0.0, 0.0, 0.2]])
    b = score_tokens([1.0, 0.0, 0.0, 0.7, 0.2], [1.0, 0.6, 0.0, 0.0, 0.2])
    assert a == b
    assert a.precision_firing == 0.5 and a.recall_firing == 0.5


def test_pearson_by_hand_and_undefined() -> None:
    assert pearson(np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 4.0])) == pytest.approx(
        12 / math.sqrt(156)
    )
    assert pearson(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])) == pytest.approx(-1.0)
    assert pearson(np.array([1.0, 2.0]), np.array([0.5, 0.5])) is None
    assert pearson(np.array([1.0]), np.array([1.0])) is None


def test_mismatched_or_nonfinite_inputs_raise() -> None:
    with pytest.raises(ValueError):
        score_tokens([1.0, 0.0], [1.0])
    with pytest.raises(ValueError):
        score_tokens([1.0, float("nan")], [1.0, 0.0])


def test_false_firing_rate() -> None:
    ff = false_firing([0.9, 0.1, 0.2, 0.0], [0.6, 0.6, 0.0, 0.0])
    assert (ff.n_tokens, ff.n_real_nonfiring, ff.n_false_firing) == (4, 3, 1)
    assert ff.rate == pytest.approx(1 / 3)
    assert false_firing([0.9], [0.0]).rate is None


def test_aggregate_counts_undefined_and_keeps_them_out_of_the_mean() -> None:
    agg = aggregate([0.5, None, 1.0, float("nan")])
    assert agg.mean == pytest.approx(0.75)
    assert (agg.n, agg.n_undefined) == (2, 2)
    assert agg.as_official == pytest.approx((0.5 + 1.0 + 1 + 1) / 4)
    empty = aggregate([None, None])
    assert empty.mean is None and empty.n_undefined == 2
    assert aggregate([]).mean is None


def test_aggregate_rows() -> None:
    rows = [{"f1_firing": 0.2, "pearson": None}, {"f1_firing": 0.4, "pearson": 0.5}]
    out = aggregate_rows(rows, ["f1_firing", "pearson"])
    assert out["f1_firing"].mean == pytest.approx(0.3)
    assert out["pearson"].n == 1 and out["pearson"].n_undefined == 1
