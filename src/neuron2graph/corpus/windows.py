"""Cut documents into fixed-length token windows, the unit that recording reads.

Windows never overlap and never cross a document boundary, so "no two top examples from
overlapping text" is simply "no two equal window indices". BOS handling is explicit because
models differ: some were trained with a BOS at every sequence start and behave oddly without it
(the first position absorbs attention), others have no BOS token at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Any, Literal, TypeVar

from neuron2graph.corpus.base import Document
from neuron2graph.errors import N2GError

BosMode = Literal["auto", "always", "never"]
BOS_MODES = ("auto", "always", "never")
MIN_WINDOW_TOKENS = 8
"""A document's last, partial window is kept only if it holds at least this many text tokens:
shorter tails carry too little context to say anything about a neuron."""

T = TypeVar("T")


@dataclass(frozen=True)
class Window:
    """`length` token ids (fewer for a document's last window), BOS first when BOS is used.

    `index` is the position in the window stream (0, 1, 2, ...); `start` is the offset of the first
    *text* token within the document's tokens (the BOS, if any, is not counted).
    """

    index: int
    doc_id: str
    start: int
    token_ids: tuple[int, ...]


def resolve_bos(tokenizer: Any, bos: str) -> int | None:
    """The BOS id to prepend to each window under `bos`, or None for no BOS."""
    if bos not in BOS_MODES:
        raise N2GError(f"unknown BOS mode {bos!r}: use one of {', '.join(BOS_MODES)}")
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos == "never":
        return None
    if bos == "always" and bos_id is None:
        raise N2GError(
            "BOS mode 'always' was asked for but this tokenizer has no BOS token: use auto or never"
        )
    return None if bos_id is None else int(bos_id)


def iter_windows(
    documents: Iterable[Document],
    tokenizer: Any,
    *,
    length: int = 64,
    bos: str = "auto",
    min_tokens: int = MIN_WINDOW_TOKENS,
) -> Iterator[Window]:
    """Tokenise each document and cut it into consecutive non-overlapping windows.

    With a BOS (`bos="auto"` when the tokenizer has one, or `"always"`) each window is the BOS
    followed by `length - 1` text tokens, so every full window has exactly `length` ids. A
    document's last window is kept when it holds at least `min(min_tokens, text tokens per
    window)` text tokens, else dropped. Streams one document at a time, in input order.
    Raises `N2GError` if the documents produce no window at all.
    """
    bos_id = resolve_bos(tokenizer, bos)
    per_window = length - 1 if bos_id is not None else length
    if per_window < 1:
        raise N2GError(f"window length {length} is too short: use at least 2 (64 is the default)")
    keep_tail = max(1, min(min_tokens, per_window))
    prefix: tuple[int, ...] = () if bos_id is None else (bos_id,)
    index = 0
    for doc in documents:
        ids = tokenizer(doc.text, add_special_tokens=False, verbose=False)["input_ids"]
        for start in range(0, len(ids), per_window):
            chunk = ids[start : start + per_window]
            if len(chunk) < keep_tail:
                break
            yield Window(index, doc.id, start, prefix + tuple(int(i) for i in chunk))
            index += 1
    if index == 0:
        raise N2GError(
            f"the corpus produced no token windows (every document is shorter than {keep_tail} "
            "tokens): use a corpus with more text"
        )


def ensure_nonempty(items: Iterable[T], what: str = "corpus") -> Iterator[T]:
    """Return an iterator over `items` that raises `N2GError` at once if there is no first item.

    Lets a caller fail before opening output files rather than after; costs one look-ahead item.
    """
    iterator = iter(items)
    for first in iterator:
        return chain((first,), iterator)
    raise N2GError(f"the {what} is empty: pass a corpus with some text")
