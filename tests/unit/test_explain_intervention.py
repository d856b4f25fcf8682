"""The intervention scorer's pieces that need no model: the rank AUROC and the explanation's
tokens (docs/explain.md, formula steps 3-4)."""

from __future__ import annotations

import pytest
import torch

from neuron2graph.explain.scorers.intervention import explanation_ids, rank_auroc
from neuron2graph.testing import tiny_tokenizer


def test_rank_auroc_counts_ties_as_half() -> None:
    d = torch.tensor([5.0, 1.0, 1.0, 0.0, -2.0])
    assert rank_auroc(d, [0]) == 1.0
    assert rank_auroc(d, [4]) == 0.0
    assert rank_auroc(d, [1]) == pytest.approx((2 + 0.5) / 4)  # above 2, tied with 1, of 4
    assert rank_auroc(d, [0, 4]) == pytest.approx(0.5)


def test_explanation_ids_take_quoted_pieces_and_words() -> None:
    tok = tiny_tokenizer()
    ids = explanation_ids(tok, "Fires on the tokens `cat`, `except` (after all).")
    words = {tok.convert_ids_to_tokens(i) for i in ids}
    assert words == {"on", "the", "cat", "except", "all"}  # unknown words and specials dropped
    assert explanation_ids(tok, "zebras galloping") == []
