"""Baselines that N2G must beat, fitted on the same train half and scored on the same test half.

The paper reports N2G alone, so its Table 1 cannot say how much of a graph's score a trivial
memoriser would get. Two memorisers answer that:

- `TokenLookup`: for each token, the max normalised activation seen on that token anywhere in the
  train examples (0.0 for unseen tokens). This is the "the neuron fires on ` except`" explanation
  with no context at all.
- `NgramLookup` (n = 5): the max normalised activation seen in train on the same *exact* 5-token
  context ending at the token (the token and its 4 predecessors within the same example; near the
  start of an example the context is what exists, so it only matches the same position). No
  back-off: an unseen context predicts 0.0. This is the opposite extreme, pure context
  memorisation, and it shows how much of the test half is a near-copy of the train half.

Both work on token ids, so they are exact (no case/whitespace folding) like our graphs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Predictor(Protocol):
    """Anything that predicts a normalised activation for every token of an example."""

    def predict(self, token_ids: Sequence[int]) -> list[float]: ...


def _check(examples: Sequence[Sequence[int]], acts: Sequence[Sequence[float]]) -> None:
    if len(examples) != len(acts):
        raise ValueError(f"{len(examples)} examples but {len(acts)} activation rows")
    for ids, row in zip(examples, acts, strict=True):
        if len(ids) != len(row):
            raise ValueError(f"an example has {len(ids)} tokens but {len(row)} activations")


class TokenLookup:
    """Predict the max normalised activation seen for the same token in train."""

    name = "token"

    def __init__(self, table: dict[int, float]) -> None:
        self.table = table

    @classmethod
    def fit(
        cls, examples: Sequence[Sequence[int]], acts_norm: Sequence[Sequence[float]]
    ) -> TokenLookup:
        _check(examples, acts_norm)
        table: dict[int, float] = {}
        for ids, row in zip(examples, acts_norm, strict=True):
            for tok, act in zip(ids, row, strict=True):
                tok = int(tok)
                if tok not in table or act > table[tok]:
                    table[tok] = float(act)
        return cls(table)

    def predict(self, token_ids: Sequence[int]) -> list[float]:
        get = self.table.get
        return [get(int(t), 0.0) for t in token_ids]


class NgramLookup:
    """Predict the max normalised activation seen in train for the exact same n-token context."""

    def __init__(self, n: int, table: dict[tuple[int, ...], float]) -> None:
        self.n = n
        self.table = table

    @property
    def name(self) -> str:
        return f"{self.n}gram"

    @staticmethod
    def _keys(token_ids: Sequence[int], n: int) -> list[tuple[int, ...]]:
        ids = [int(t) for t in token_ids]
        return [tuple(ids[max(0, i - n + 1) : i + 1]) for i in range(len(ids))]

    @classmethod
    def fit(
        cls,
        examples: Sequence[Sequence[int]],
        acts_norm: Sequence[Sequence[float]],
        *,
        n: int = 5,
    ) -> NgramLookup:
        if n < 1:
            raise ValueError("n must be at least 1")
        _check(examples, acts_norm)
        table: dict[tuple[int, ...], float] = {}
        for ids, row in zip(examples, acts_norm, strict=True):
            for key, act in zip(cls._keys(ids, n), row, strict=True):
                if key not in table or act > table[key]:
                    table[key] = float(act)
        return cls(n, table)

    def predict(self, token_ids: Sequence[int]) -> list[float]:
        get = self.table.get
        return [get(key, 0.0) for key in self._keys(token_ids, self.n)]


__all__ = ["NgramLookup", "Predictor", "TokenLookup"]
