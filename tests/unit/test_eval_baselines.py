"""Token and 5-gram lookup baselines on tiny hand-made data (no model)."""

from __future__ import annotations

import pytest

from neuron2graph.evaluate.baselines import NgramLookup, TokenLookup
from neuron2graph.evaluate.metrics import score_tokens

TRAIN = [[5, 6, 7, 8, 9, 7], [1, 7, 3]]
ACTS = [[0.0, 0.1, 0.4, 0.0, 0.2, 0.9], [0.0, 0.6, -0.3]]


def test_token_lookup_takes_the_max_per_token_and_zero_for_unseen() -> None:
    base = TokenLookup.fit(TRAIN, ACTS)
    assert base.table[7] == pytest.approx(0.9)  # max of 0.4, 0.9, 0.6
    assert base.table[3] == pytest.approx(-0.3)
    assert base.predict([7, 3, 42, 6]) == pytest.approx([0.9, -0.3, 0.0, 0.1])


def test_ngram_lookup_needs_the_exact_context() -> None:
    base = NgramLookup.fit(TRAIN, ACTS, n=5)
    assert base.name == "5gram"
    # Same 5 tokens ending in 7 as train example 0, position 5: 6 7 8 9 7 -> 0.9.
    assert base.predict([0, 6, 7, 8, 9, 7]) == pytest.approx([0, 0, 0, 0, 0, 0.9])
    # One token of context changed: no match, although token 7 fired in train.
    assert base.predict([6, 7, 8, 2, 7]) == pytest.approx([0, 0, 0, 0, 0])
    # Near an example's start the context is what exists: [1, 7] only matches at position 1.
    assert base.predict([1, 7, 3]) == pytest.approx([0.0, 0.6, -0.3])
    assert base.predict([4, 1, 7]) == pytest.approx([0.0, 0.0, 0.0])


def test_ngram_with_n1_is_token_lookup() -> None:
    text = [7, 3, 42, 6, 9]
    assert NgramLookup.fit(TRAIN, ACTS, n=1).predict(text) == TokenLookup.fit(TRAIN, ACTS).predict(
        text
    )


def test_baselines_score_on_a_planted_pattern() -> None:
    # The neuron fires on 7 only after 6: token lookup over-fires, the 5-gram is exact but narrow.
    train = [[6, 7, 1, 7], [2, 6, 7]]
    acts = [[0.0, 1.0, 0.0, 0.1], [0.0, 0.0, 0.8]]
    test = [[3, 6, 7, 7], [6, 7, 2, 7]]
    real = [[0.0, 0.0, 0.9, 0.0], [0.0, 0.9, 0.0, 0.0]]
    tok = TokenLookup.fit(train, acts)
    s = score_tokens(real, [tok.predict(t) for t in test])
    assert s.recall_firing == 1.0 and s.precision_firing == pytest.approx(2 / 4)
    gram = NgramLookup.fit(train, acts, n=5)
    g = score_tokens(real, [gram.predict(t) for t in test])
    # Only the test example that starts like a train example ([6, 7] at position 1) matches.
    assert g.precision_firing == 1.0 and g.recall_firing == 0.5


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError):
        TokenLookup.fit([[1, 2]], [[0.1]])
    with pytest.raises(ValueError):
        NgramLookup.fit([[1, 2]], [[0.1, 0.2], [0.3]])
