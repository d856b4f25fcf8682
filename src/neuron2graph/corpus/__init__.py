"""Corpus: text sources -> documents -> fixed-length token windows, streamed and deterministic.

    docs = iter_documents("default")            # or "a.txt,b.jsonl", "data/*.parquet", "hf:NAME"
    for window in iter_windows(docs, tokenizer, length=64, bos="auto"): ...

See docs/corpus.md for the spec grammar, the built-in default and BOS semantics.
"""

from neuron2graph.corpus.base import Document
from neuron2graph.corpus.builtin import BUILTINS
from neuron2graph.corpus.documents import describe_corpus, iter_documents
from neuron2graph.corpus.windows import (
    BOS_MODES,
    MIN_WINDOW_TOKENS,
    BosMode,
    Window,
    ensure_nonempty,
    iter_windows,
    resolve_bos,
)

__all__ = [
    "BOS_MODES",
    "BUILTINS",
    "MIN_WINDOW_TOKENS",
    "BosMode",
    "Document",
    "Window",
    "describe_corpus",
    "ensure_nonempty",
    "iter_documents",
    "iter_windows",
    "resolve_bos",
]
