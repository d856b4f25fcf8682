"""Documents from a Hugging Face dataset, streamed (`hf:NAME[:SPLIT]` or `hf:NAME:CONFIG:SPLIT`).

`datasets` is imported only here and only when such a spec is used: it is an optional, heavy
dependency, and every other corpus works offline without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from neuron2graph.corpus.base import Document
from neuron2graph.errors import N2GError


def parse_hf(spec: str) -> tuple[str, str | None, str]:
    """Split `hf:NAME[:SPLIT]` / `hf:NAME:CONFIG:SPLIT` into (name, config, split)."""
    parts = spec[len("hf:"):].split(":")
    if not parts[0] or len(parts) > 3 or any(not p for p in parts):
        raise N2GError(
            f"bad Hugging Face corpus {spec!r}: "
            "write hf:NAME, hf:NAME:SPLIT or hf:NAME:CONFIG:SPLIT"
        )
    if len(parts) == 1:
        return parts[0], None, "train"
    if len(parts) == 2:
        return parts[0], None, parts[1]
    return parts[0], parts[1], parts[2]


def iter_hf(spec: str) -> Iterator[Document]:
    name, config, split = parse_hf(spec)
    try:
        import datasets
    except ImportError:
        raise N2GError(
            f"corpus {spec!r} needs the `datasets` package: pip install datasets (and be online), "
            "or pass a local .txt/.jsonl/.parquet file"
        ) from None
    try:
        stream: Any = datasets.load_dataset(name, config, split=split, streaming=True)
        rows = iter(stream)
        first = next(rows, None)
    except Exception as exc:  # offline, unknown name, bad split: datasets raises many types
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise N2GError(
            f"cannot open Hugging Face dataset {spec!r} ({reason}): check the name, split and "
            "network, or use a local file"
        ) from None
    if first is None:
        return
    if "text" not in first:
        raise N2GError(
            f"Hugging Face dataset {spec!r} has no \"text\" field (fields: {', '.join(first)}): "
            "pick a dataset with a text column"
        )
    for index, row in enumerate(_chain(first, rows)):
        text = row.get("text")
        if isinstance(text, str) and text.strip():
            yield Document(f"hf:{name}/{split}#{index}", text)


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest
