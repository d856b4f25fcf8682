"""The all-activation-levels split (evaluate/levels.py) on a fake run, model-free."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from neuron2graph.errors import N2GError
from neuron2graph.evaluate.levels import levels_split, levels_train_set
from neuron2graph.evaluate.protocol import EvalConfig
from neuron2graph.ids import NeuronId
from neuron2graph.store.run import Example


def _ex(window: int, peak: float) -> Example:
    acts = [0.0, peak, peak / 2, 0.0]
    return Example(window, [1, 2, 3, 4], ["a", "b", "c", "d"], acts, max(acts))


@dataclass
class LevelsRun:
    """30 top windows (peaks 1.0 .. 0.42) and 100 random windows, 40 of them activating."""

    def a_max(self, nid: Any) -> float:
        return 1.0

    def top_examples(self, nid: Any, k: int | None = None) -> list[Example]:
        out = [_ex(i, 1.0 - 0.02 * i) for i in range(30)]
        return out[:k] if k is not None else out

    def sample_examples(self, nid: Any) -> list[Example]:
        # Window 0 is also a top window: it must be counted once.
        return [_ex(0, 1.0)] + [_ex(1000 + i, 0.3 + 0.005 * i if i < 40 else 0.05)
                                for i in range(99)]


def test_split_is_disjoint_stratified_and_seeded() -> None:
    run, nid = LevelsRun(), NeuronId(3, 7)
    cfg = EvalConfig(protocol="levels")
    split = levels_split(run, nid, cfg)
    windows = [{int(e.window) for e in part} for part in (split.train, split.val, split.test)]
    assert sum(len(w) for w in windows) == 30 + 99  # every window once, window 0 not twice
    assert not (windows[0] & windows[1] or windows[0] & windows[2] or windows[1] & windows[2])
    # 30 / 20 / 50 in every activation level: the test split holds weak and strong windows.
    test_bins = {split.bins[int(e.window)] for e in split.test if int(e.window) in split.bins}
    assert test_bins == set(range(10))
    assert len(split.test) == pytest.approx(0.3 * 129, abs=3)
    assert len(split.val) == pytest.approx(0.2 * 129, abs=3)
    assert any(int(e.window) in split.random and e.max_act < 0.2 for e in split.test)
    again = levels_split(run, nid, cfg)
    assert [e.window for e in again.test] == [e.window for e in split.test]
    other = levels_split(run, NeuronId(3, 8), cfg)
    assert [e.window for e in other.test] != [e.window for e in split.test]


def test_train_set_offers_strongest_train_windows_and_calibrates_on_all() -> None:
    run, nid = LevelsRun(), NeuronId(3, 7)
    cfg = EvalConfig(protocol="levels")
    split = levels_split(run, nid, cfg)
    ts = levels_train_set(run, nid, cfg, split)
    assert len(ts.examples) == 10 and len(ts.more) == 10
    peaks = [max(a) for a in (ts.acts or []) + ts.more_acts]
    assert peaks == sorted(peaks, reverse=True)
    train = {int(e.window) for e in split.train}
    assert ts.calibration is not None and len(ts.calibration) == len(split.train)
    held = {int(e.window) for e in split.test + split.val}
    assert not held & train


def test_bad_protocol_settings_are_refused() -> None:
    with pytest.raises(N2GError, match="protocol"):
        EvalConfig(protocol="nope").check()
    with pytest.raises(N2GError, match="split"):
        EvalConfig(split="train").check()
    # The paper protocol keeps the fingerprint it always had.
    assert "protocol" not in EvalConfig().settings()
    assert EvalConfig(protocol="levels").settings()["protocol"] == "levels"
