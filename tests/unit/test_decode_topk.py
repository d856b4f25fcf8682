"""Chunked top-k (no model): equals one dense topk whatever the chunk sizes; the table reader."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import torch

from neuron2graph.decode.table import decoded_layers, decoded_tokens, write_layer_rows
from neuron2graph.decode.topk import chunked_topk


@pytest.mark.parametrize(
    ("neuron_chunk", "vocab_chunk"), [(1, 1), (7, 13), (64, 5), (1000, 1000), (3, 97)]
)
def test_chunked_topk_matches_dense(neuron_chunk: int, vocab_chunk: int) -> None:
    gen = torch.Generator().manual_seed(0)
    dirs = torch.randn(50, 16, generator=gen)
    unembed = torch.randn(97, 16, generator=gen)
    dense = dirs @ unembed.T
    k = 6
    top, bot = chunked_topk(
        dirs, unembed, k, bottom=True, neuron_chunk=neuron_chunk, vocab_chunk=vocab_chunk
    )
    ref_top = dense.topk(k, dim=1)
    ref_bot = dense.topk(k, dim=1, largest=False)
    assert bot is not None
    assert torch.equal(top.ids, ref_top.indices)
    assert torch.equal(bot.ids, ref_bot.indices)
    torch.testing.assert_close(top.values, ref_top.values, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bot.values, ref_bot.values, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("neuron_chunk", "vocab_chunk"), [(5, 64), (50, 320), (8, 48), (9, 160)])
def test_two_stage_topk_matches_dense(neuron_chunk: int, vocab_chunk: int) -> None:
    """Vocabulary chunks that are multiples of the group width take the two-stage path."""
    gen = torch.Generator().manual_seed(1)
    dirs = torch.randn(40, 8, generator=gen)
    unembed = torch.randn(320, 8, generator=gen)
    dense = dirs @ unembed.T
    for k in (1, 6):
        top, bot = chunked_topk(
            dirs, unembed, k, bottom=True, neuron_chunk=neuron_chunk, vocab_chunk=vocab_chunk
        )
        assert bot is not None
        assert torch.equal(top.ids, dense.topk(k, dim=1).indices)
        assert torch.equal(bot.ids, dense.topk(k, dim=1, largest=False).indices)


def test_k_larger_than_vocab_is_clipped() -> None:
    top, bot = chunked_topk(torch.randn(3, 4), torch.randn(5, 4), 10, vocab_chunk=2)
    assert top.ids.shape == (3, 5) and bot is None
    assert sorted(top.ids[0].tolist()) == [0, 1, 2, 3, 4]


def test_decoded_tokens_round_trip(tmp_path: Path) -> None:
    assert decoded_tokens(tmp_path, 0, 0) == {}  # never decoded: empty, no error
    conn = sqlite3.connect(tmp_path / "index.sqlite")
    assert decoded_tokens(conn, 0, 0) == {}  # database without the table
    rows = [(2, 5, "promote", r, 10 + r, f"t{r}", 3.0 - r) for r in range(3)]
    rows += [(2, 5, "suppress", 0, 7, "bad", -4.0), (2, 6, "promote", 0, 1, "x", 1.0)]
    write_layer_rows(conn, 2, rows)
    conn.close()
    got = decoded_tokens(tmp_path, 2, 5)
    assert list(got) == ["promote", "suppress"]
    assert [r["token"] for r in got["promote"]] == ["t0", "t1", "t2"]
    assert got["suppress"] == [{"rank": 0, "token_id": 7, "token": "bad", "logit": -4.0}]
    assert decoded_layers(tmp_path) == [2]
    # Rewriting a layer replaces its rows.
    conn = sqlite3.connect(tmp_path / "index.sqlite")
    write_layer_rows(conn, 2, [(2, 5, "promote", 0, 99, "new", 9.0)])
    assert decoded_tokens(conn, 2, 5) == {
        "promote": [{"rank": 0, "token_id": 99, "token": "new", "logit": 9.0}]
    }
    assert decoded_tokens(conn, 2, 6) == {}


def test_table_module_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import neuron2graph.decode.table as t; "
        "from neuron2graph.decode import decoded_tokens; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
