"""The pipelined recorder (fold of batch i on worker threads during the forward of batch i + 1,
as on an accelerator; histogram counted block by block) writes exactly what the fold in the
recording thread with one bincount per layer writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from record_fixtures import tiny_documents

from neuron2graph.corpus import iter_windows
from neuron2graph.models import LoadedModel
from neuron2graph.record import RecordConfig, record, recorder, state
from neuron2graph.record.fold import Folder
from neuron2graph.record.state import Batch, LayerState, SampleState
from neuron2graph.testing import tiny_model

WINDOW = 16
CONFIG = RecordConfig(window=WINDOW, top_k=5, sample=12, batch_size=4, max_tokens=2500,
                      checkpoint_every=3)


def _record(lm: LoadedModel, out: Path) -> dict[str, Any]:
    windows = iter_windows(tiny_documents(), lm.tokenizer, length=WINDOW)
    run = record(lm, windows, [0, 1, 2], out, CONFIG, progress=False,
                 corpus={"spec": "tiny-docs"})
    files = {p.name: p.read_bytes() for p in sorted((out / "record").glob("*.safetensors"))}
    conn = run.db()
    try:
        rows = conn.execute("SELECT * FROM neurons ORDER BY layer, neuron").fetchall()
    finally:
        conn.close()
    return {"files": files, "rows": rows, "windows": run.manifest["windows"],
            "tokens": run.manifest["tokens"]}


def test_pipelined_recording_is_byte_identical_to_the_sequential_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lm = tiny_model("llama", n_layers=3)
    calls: list[bool] = []

    def forced(background: bool) -> Any:
        def make(states: dict[int, LayerState], sample: SampleState, **_: Any) -> Folder:
            calls.append(background)
            return Folder(states, sample, background=background)
        return make

    with monkeypatch.context() as m:
        m.setattr(recorder, "Folder", forced(False))
        m.setattr(state, "HIST_BLOCK", 1 << 20)  # one bincount over all neurons, as before
        want = _record(lm, tmp_path / "sequential")
    monkeypatch.setattr(recorder, "Folder", forced(True))
    monkeypatch.setattr(state, "HIST_BLOCK", 24)  # 64 neurons: blocks of 24, 24 and 16
    got = _record(lm, tmp_path / "pipelined")
    assert calls == [False, True]
    assert want["tokens"] >= 2500 and len(want["files"]) == 4 and len(want["rows"]) == 3 * 64
    assert got["files"].keys() == want["files"].keys()
    for name, data in want["files"].items():
        assert got["files"][name] == data, name
    assert got["rows"] == want["rows"]
    assert got["windows"] == want["windows"]


def test_folder_overlaps_the_next_forward_and_yields_only_folded_batches() -> None:
    """`folded` pulls the next forward before waiting for the previous fold, and hands a batch
    back only when its fold is done (no fold in flight while the caller holds it)."""
    n, k, t, s = 8, 2, 4, 3
    states = {0: LayerState(n, k, t, s), 1: LayerState(n, k, t, s)}
    sample = SampleState(s, t, seed=0)
    events: list[str] = []

    def forwards() -> Any:
        for i in range(3):
            events.append(f"forward {i}")
            valid = torch.ones((2, t), dtype=torch.bool)
            valid[:, 0] = False
            batch = Batch(window=torch.tensor([2 * i, 2 * i + 1]),
                          length=torch.full((2,), t, dtype=torch.int32),
                          tokens=torch.zeros((2, t), dtype=torch.int32), valid=valid,
                          bos_only_excluded=True)
            yield batch, {layer: torch.full((2, t, n), float(i + 1)) for layer in states}

    with Folder(states, sample, background=True) as folder:
        for batch in folder.folded(forwards()):
            i = int(batch.window[0]) // 2
            assert not folder._pending
            assert float(states[1].max[0]) == i + 1  # this batch is folded in
            events.append(f"got {i}")
    assert events == ["forward 0", "forward 1", "got 0", "forward 2", "got 1", "got 2"]
    assert int(states[0].hist.sum()) == 3 * 2 * (t - 1) * n
