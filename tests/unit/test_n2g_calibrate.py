"""The improved method's calibration (n2g/calibrate.py) on hand-built graphs, model-free."""

from __future__ import annotations

from pathlib import Path

import pytest

from neuron2graph.n2g.calibrate import CalibrateConfig, calibrate, chosen_path, predict_calibrated
from neuron2graph.n2g.graph import NeuronGraph


def _graph() -> NeuronGraph:
    """` B` fires after ` A` two tokens back (one wildcard between), as the paper builds it."""
    g = NeuronGraph("1:1")
    g.add_path(" B", 0.9, [None, (" A", 0.9)])
    return g


def test_paper_prediction_needs_the_full_path() -> None:
    g = _graph()
    assert g.predict([" A", " x", " B"]) == [0.0, 0.0, 0.9]
    assert g.predict([" y", " x", " B"]) == [0.0, 0.0, 0.0]  # no back-off in the paper's search


def test_calibration_learns_from_negative_matches() -> None:
    """The path ` A` * ` B` matched 4 times in train, firing once: its value falls below the
    firing threshold, so the calibrated graph stops firing where the paper's graph would."""
    g = _graph()
    windows = [([" A", " x", " B"], [0.0, 0.0, 0.8])] + [
        ([" A", " z", " B"], [0.0, 0.0, 0.1]) for _ in range(3)
    ]
    assert calibrate(g, windows, CalibrateConfig(backoff=False, min_count=1)) == 4
    pred = g.predict([" A", " q", " B"])  # a calibrated graph predicts calibrated by default
    assert pred[2] == pytest.approx((0.8 + 0.3) / 4)
    assert pred[2] < 0.5
    assert g.predict([" A", " q", " B"], search="longest")[2] == 0.9  # the paper's value is kept


def test_vote_decides_firing_and_backoff_covers_unseen_contexts() -> None:
    g = _graph()
    windows = [([" y", " B"], [0.0, 0.6]), ([" w", " B"], [0.0, 0.7]), ([" v", " B"], [0.0, 0.2])]
    windows.append(([" A", " x", " B"], [0.0, 0.0, 0.9]))
    calibrate(g, windows, CalibrateConfig(backoff=True, min_count=2, vote=0.5))
    # An unseen context: no full path, so the ` B` node (4 positions, 3 fired) predicts firing.
    value = predict_calibrated(g, [" k", " B"])[1]
    assert value >= 0.5
    assert value == pytest.approx((0.6 + 0.7 + 0.2 + 0.9) / 4)
    # A stricter vote (all positions must fire) turns the same node off, below the threshold.
    strict = CalibrateConfig(backoff=True, min_count=2, vote=1.0)
    assert predict_calibrated(g, [" k", " B"], strict)[1] < 0.5
    # Without back-off an unseen context predicts nothing.
    off = CalibrateConfig(backoff=False, min_count=1)
    calibrate(g, windows, off)
    assert predict_calibrated(g, [" k", " B"])[1] == 0.0


def test_backoff_path_is_the_deepest_exact_match() -> None:
    g = _graph()
    path = chosen_path(g, [" A", " x", " B"], 2, backoff=True)
    assert path is not None and [n.token for n in path] == [" B", None, " A"]
    short = chosen_path(g, [" C", " x", " B"], 2, backoff=True)
    assert short is not None and [n.token for n in short] == [" B"]
    assert chosen_path(g, [" C", " x", " B"], 2, backoff=False) is None


def test_calibration_survives_save_and_load(tmp_path: Path) -> None:
    g = _graph()
    calibrate(g, [([" A", " x", " B"], [0.0, 0.0, 0.3])] * 2, CalibrateConfig(min_count=1))
    g.save(tmp_path / "g.json")
    back = NeuronGraph.load(tmp_path / "g.json")
    tokens = [" A", " x", " B", " q", " B"]
    assert back.predict(tokens) == g.predict(tokens)
    assert back.meta["calibration"]["positions"] == 2


def test_per_layer_bands_choose_vote_and_min_count() -> None:
    from neuron2graph.n2g.pipeline import ImproveConfig

    imp = ImproveConfig(bands=((5, 0.4, 1), (15, 0.3, 3)))
    assert (imp.for_layer(0).vote, imp.for_layer(0).min_count) == (0.5, 2)  # the default
    assert (imp.for_layer(10).vote, imp.for_layer(10).min_count) == (0.4, 1)
    assert (imp.for_layer(29).vote, imp.for_layer(29).min_count) == (0.3, 3)
