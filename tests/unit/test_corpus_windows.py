"""Token windows: lengths, BOS modes, tails, determinism, streaming, empty corpora."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

import pytest

from neuron2graph.corpus import (
    MIN_WINDOW_TOKENS,
    Document,
    Window,
    ensure_nonempty,
    iter_windows,
)
from neuron2graph.errors import N2GError
from neuron2graph.testing import WORDS, tiny_tokenizer

BOS = 1


@pytest.fixture(scope="module")
def tok() -> Any:
    return tiny_tokenizer()


class NoBosTokenizer:
    """Wraps the tiny tokenizer but has no BOS token, like GPT-NeoX-style tokenizers without one."""

    bos_token_id = None

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, text: str, **kwargs: Any) -> Any:
        return self.inner(text, **kwargs)


def doc_of(n_words: int, name: str = "d", offset: int = 0) -> Document:
    return Document(name, " ".join(WORDS[(offset + i) % len(WORDS)] for i in range(n_words)))


def ids_of(tok: Any, doc: Document) -> list[int]:
    return list(tok(doc.text, add_special_tokens=False)["input_ids"])


def test_auto_bos_full_windows_have_exact_length(tok: Any) -> None:
    doc = doc_of(40)
    wins = list(iter_windows([doc], tok, length=10, bos="auto"))
    assert all(len(w.token_ids) == 10 for w in wins[:-1])
    assert all(w.token_ids[0] == BOS for w in wins)
    # 40 text tokens, 9 per window: 4 full windows and a 4-token tail, dropped (< 8)
    assert [w.start for w in wins] == [0, 9, 18, 27]
    text = ids_of(tok, doc)
    for w in wins:
        assert list(w.token_ids[1:]) == text[w.start : w.start + 9]


def test_never_bos_uses_all_positions_for_text(tok: Any) -> None:
    doc = doc_of(40)
    wins = list(iter_windows([doc], tok, length=10, bos="never"))
    assert [w.start for w in wins] == [0, 10, 20, 30]
    assert [list(w.token_ids) for w in wins] == [ids_of(tok, doc)[i : i + 10]
                                                 for i in (0, 10, 20, 30)]
    assert BOS not in {t for w in wins for t in w.token_ids}


def test_always_bos_equals_auto_when_tokenizer_has_one(tok: Any) -> None:
    doc = doc_of(30)
    assert list(iter_windows([doc], tok, length=8, bos="always")) == list(
        iter_windows([doc], tok, length=8, bos="auto"))


def test_auto_without_bos_token_means_no_bos(tok: Any) -> None:
    plain = NoBosTokenizer(tok)
    doc = doc_of(20)
    assert list(iter_windows([doc], plain, length=10, bos="auto")) == list(
        iter_windows([doc], tok, length=10, bos="never"))


def test_always_without_bos_token_is_an_error(tok: Any) -> None:
    with pytest.raises(N2GError, match="no BOS token"):
        list(iter_windows([doc_of(20)], NoBosTokenizer(tok), bos="always"))


def test_unknown_bos_mode(tok: Any) -> None:
    with pytest.raises(N2GError, match="unknown BOS mode 'sometimes'"):
        list(iter_windows([doc_of(20)], tok, bos="sometimes"))


@pytest.mark.parametrize(
    ("tail", "kept"), [(MIN_WINDOW_TOKENS - 1, False), (MIN_WINDOW_TOKENS, True)]
)
def test_tail_kept_only_at_minimum(tok: Any, tail: int, kept: bool) -> None:
    wins = list(iter_windows([doc_of(20 + tail)], tok, length=20, bos="never"))
    assert len(wins) == (2 if kept else 1)
    if kept:
        assert len(wins[-1].token_ids) == tail and wins[-1].start == 20


def test_short_document_dropped_but_others_kept(tok: Any) -> None:
    wins = list(iter_windows([doc_of(3, "short"), doc_of(12, "long")], tok, length=64, bos="never"))
    assert [(w.index, w.doc_id, len(w.token_ids)) for w in wins] == [(0, "long", 12)]


def test_windows_never_cross_documents_and_indices_count_up(tok: Any) -> None:
    docs = [doc_of(25, "a"), doc_of(30, "b", offset=5), doc_of(9, "c")]
    wins = list(iter_windows(docs, tok, length=10, bos="auto"))
    assert [w.index for w in wins] == list(range(len(wins)))
    assert [w.doc_id for w in wins] == ["a", "a", "b", "b", "b", "c"]
    assert [w.start for w in wins] == [0, 9, 0, 9, 18, 0]


def test_small_length_lowers_minimum_tail(tok: Any) -> None:
    # With 4 text tokens per window the minimum tail is 4, not 8: tails are never longer than full.
    wins = list(iter_windows([doc_of(10)], tok, length=5, bos="auto"))
    assert [len(w.token_ids) for w in wins] == [5, 5]


@pytest.mark.parametrize(("length", "bos"), [(1, "auto"), (0, "never")])
def test_length_too_short(tok: Any, length: int, bos: str) -> None:
    with pytest.raises(N2GError, match="too short"):
        list(iter_windows([doc_of(20)], tok, length=length, bos=bos))


def test_deterministic(tok: Any) -> None:
    docs = [doc_of(n, f"d{n}", offset=n) for n in (30, 70, 12)]
    first = list(iter_windows(docs, tok, length=16))
    assert first == list(iter_windows(docs, tok, length=16))
    assert all(isinstance(w, Window) for w in first)


def test_streams_documents_lazily(tok: Any) -> None:
    pulled: list[int] = []

    def generate() -> Iterator[Document]:
        for i in range(1000):
            pulled.append(i)
            yield doc_of(20, f"d{i}")

    wins = iter_windows(generate(), tok, length=10, bos="never")
    assert len(list(islice(wins, 3))) == 3
    assert pulled == [0, 1]  # two windows per document: only two documents were read


def test_no_windows_is_an_error(tok: Any) -> None:
    with pytest.raises(N2GError, match="no token windows"):
        list(iter_windows([doc_of(3), doc_of(2)], tok, length=64))
    with pytest.raises(N2GError, match="no token windows"):
        list(iter_windows([], tok))


def test_ensure_nonempty() -> None:
    assert list(ensure_nonempty(iter([1, 2, 3]))) == [1, 2, 3]
    with pytest.raises(N2GError, match="the corpus is empty"):
        ensure_nonempty(iter([]))


def test_ensure_nonempty_looks_ahead_only_one() -> None:
    pulled: list[int] = []

    def generate() -> Iterator[int]:
        for i in range(10):
            pulled.append(i)
            yield i

    stream = ensure_nonempty(generate(), "window stream")
    assert pulled == [0]
    assert next(stream) == 0 and next(stream) == 1
