"""Example sampling on a small in-memory run: splits, quantiles, negatives, seeding."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from neuron2graph.errors import N2GError
from neuron2graph.explain.examples import (
    ExampleConfig,
    cut,
    draw_examples,
    quantile_bins,
)
from neuron2graph.ids import NeuronId
from neuron2graph.store.run import Example

WORDS = ["the", "cat", "sat", "on", "all", "except", "dog", "red", "fish", "tree"]


def _example(window: int, rng: random.Random, fire: float | None, length: int = 48) -> Example:
    """A window of words; when `fire` is set, every ` except` gets that activation."""
    toks = [f" {rng.choice(WORDS)}" for _ in range(length)]
    if fire is not None:
        toks[rng.randrange(8, length)] = " except"
    acts = [fire if (fire is not None and t == " except") else 0.0 for t in toks]
    return Example(window=window, token_ids=[WORDS.index(t.strip()) for t in toks], tokens=toks,
                   acts=acts, max_act=max(acts))


class FakeRun:
    def __init__(self) -> None:
        rng = random.Random(0)
        self.path = Path("/nonexistent")
        self.top = sorted((_example(i, rng, 10.0 - i * 0.3) for i in range(20)),
                          key=lambda e: -e.max_act)
        sample = [_example(100 + i, rng, rng.uniform(2.5, 7) if i % 3 == 0 else None)
                  for i in range(60)]
        # quiet windows may hold " except" (hard negatives) when fire is None: acts stay 0
        for ex in sample:
            if ex.max_act == 0 and ex.window % 2 == 0:
                ex.tokens[5] = " except"
        self.sample = sample

    def a_max(self, nid: object) -> float:
        return 10.0

    def top_examples(self, nid: object, k: int | None = None) -> list[Example]:
        return self.top[:k]

    def sample_examples(self, nid: object) -> list[Example]:
        return self.sample


def test_cut_keeps_three_quarters_on_the_left() -> None:
    ex = _example(0, random.Random(1), None, length=64)
    assert cut(ex, 40, 32) == (40 - 23, 40 - 23 + 32)
    assert cut(ex, 2, 32) == (0, 32)
    assert cut(ex, 63, 32) == (32, 64)


def test_quantile_bins_equal_count() -> None:
    bins = quantile_bins([5, 1, 3, 2, 4, 6, 8, 7, 9, 10], 5)
    assert sorted(bins) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert bins[1] == 0 and bins[9] == 4


@pytest.mark.parametrize("mode", ["top", "quantiles", "mix"])
def test_draw_is_seeded_disjoint_and_well_labelled(mode: str) -> None:
    run = FakeRun()
    cfg = ExampleConfig(train=mode, n_train=8, n_test=10, n_negative=6, n_hard=4)  # type: ignore[arg-type]
    nid = NeuronId(3, 7)
    a = draw_examples(run, nid, cfg)
    b = draw_examples(run, nid, cfg)
    assert a.to_json() == b.to_json()
    assert len(a.train) == 8 and len(a.test) == 10
    train_w = {c.window for c in a.train}
    assert not train_w & {c.window for c in a.test}
    assert all(len(c.tokens) == 32 for c in a.train + a.test + a.negative)
    assert all(c.max_act >= 2.0 for c in a.train + a.test)  # min_act 0.2 x a_max 10
    assert all(c.max_act < 2.0 for c in a.negative + a.hard_negative)
    assert len(a.hard_negative) == 4 and all(" except" in c.tokens for c in a.hard_negative)
    assert a.triggers == [" except"]
    assert len({c.quantile for c in a.test}) >= 5  # the test set spans the quantiles
    if mode == "top":
        assert min(c.max_act for c in a.train) >= max(
            c.max_act for c in a.test if c.window not in train_w and c.quantile < 5)
    other = draw_examples(run, nid, ExampleConfig(train=mode, n_train=8, n_test=10, seed=1))  # type: ignore[arg-type]
    assert [c.window for c in other.test] != [c.window for c in a.test]


def test_mix_differs_from_top() -> None:
    run = FakeRun()
    top = draw_examples(run, NeuronId(0, 0), ExampleConfig(train="top", n_train=8))
    quant = draw_examples(run, NeuronId(0, 0), ExampleConfig(train="quantiles", n_train=8))
    assert sum(c.max_act for c in top.train) > sum(c.max_act for c in quant.train)


def test_bad_settings_are_one_line_errors() -> None:
    with pytest.raises(N2GError, match="train sampling"):
        draw_examples(FakeRun(), NeuronId(0, 0), ExampleConfig(train="best"))  # type: ignore[arg-type]
    with pytest.raises(N2GError, match="min-act"):
        ExampleConfig(min_act=0).check()
