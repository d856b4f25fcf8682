"""Token pieces: the text of single tokens, the unit graphs are keyed by.

`tokenizer.decode([id])` gives the readable piece (" except"); byte-fallback ids that are only part
of a UTF-8 character decode to U+FFFD, so several ids would collide. Those get a unique, explicit
key `<|id:N|>` instead, which keeps graphs exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_CACHE_ATTR = "_n2g_piece_cache"


def token_piece(tokenizer: Any, token_id: int) -> str:
    cache: dict[int, str] | None = getattr(tokenizer, _CACHE_ATTR, None)
    if cache is None:
        cache = {}
        try:
            setattr(tokenizer, _CACHE_ATTR, cache)
        except AttributeError:
            pass
    piece = cache.get(token_id)
    if piece is None:
        piece = tokenizer.decode([int(token_id)])
        if "\ufffd" in piece or piece == "":
            piece = f"<|id:{int(token_id)}|>"
        cache[token_id] = piece
    return piece


def token_pieces(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    return [token_piece(tokenizer, int(i)) for i in ids]
