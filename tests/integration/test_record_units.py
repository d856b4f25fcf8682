"""Recording through unit sources: the sparse random sample holds exactly the dense one's
values, survives a crash and resume, and runs name their unit kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from record_fixtures import tiny_documents
from safetensors.numpy import load_file

from neuron2graph.corpus import iter_windows
from neuron2graph.ids import UnitId
from neuron2graph.models import LoadedModel
from neuron2graph.record import RecordConfig, record
from neuron2graph.store import Run
from neuron2graph.testing import random_latents, tiny_model
from neuron2graph.units import source_for_run
from neuron2graph.units.neurons import MlpNeurons

WINDOW = 16
CONFIG = RecordConfig(window=WINDOW, top_k=4, sample=10, batch_size=4, max_tokens=1000,
                      checkpoint_every=3)


@pytest.fixture(scope="module")
def lm() -> LoadedModel:
    return tiny_model("llama", n_layers=3)


def _record(lm: LoadedModel, out: Path, source: Any = None, **kw: Any) -> Run:
    windows = iter_windows(tiny_documents(), lm.tokenizer, length=WINDOW)
    return record(lm, windows, [0, 2], out, CONFIG, progress=False,
                  corpus={"spec": "tiny-docs"}, source=source, **kw)


def _same_runs(a: Run, b: Run, n_units: int) -> None:
    for layer in (0, 2):
        for name, value in a.stats(layer).items():
            np.testing.assert_array_equal(value, b.stats(layer)[name], err_msg=name)
        for i in range(0, n_units, 5):
            uid = UnitId(layer, i)
            assert a.top_examples(uid) == b.top_examples(uid)
            assert a.sample_examples(uid) == b.sample_examples(uid)


def test_sparse_sample_of_neurons_equals_the_dense_one(lm: LoadedModel, tmp_path: Path) -> None:
    dense = _record(lm, tmp_path / "dense")
    sparse_source = MlpNeurons(lm)
    sparse_source.sparse = True
    sparse = _record(lm, tmp_path / "sparse", sparse_source)
    assert dense.manifest["units"] == sparse.manifest["units"] == "neurons"
    assert isinstance(source_for_run(dense, lm), MlpNeurons)
    files = load_file(str(tmp_path / "sparse" / "record" / "layer_0.safetensors"))
    assert "sample_acts" not in files and files["sample_ptr"].shape == (lm.n_neurons + 1,)
    assert len(dense.sample_examples(UnitId(0, 1))) == CONFIG.sample
    _same_runs(dense, sparse, lm.n_neurons)


def test_sparse_latents_sample_matches_a_fresh_forward(lm: LoadedModel, tmp_path: Path) -> None:
    source = random_latents(lm, 300, k=8)
    run = _record(lm, tmp_path / "latents", source)
    assert run.manifest["units"] == run.units == "random-latents" and run.n_neurons == 300
    assert run.unit_site == "resid_post"
    files = load_file(str(tmp_path / "latents" / "record" / "layer_2.safetensors"))
    nnz = len(files["sample_val"])
    assert 0 < nnz <= CONFIG.sample * WINDOW * 8  # at most k nonzeros per token
    assert bool((files["sample_val"] != 0).all())
    checked = 0
    examples = {unit: run.sample_examples(UnitId(2, unit)) for unit in range(300)}
    for row, first in enumerate(examples[0]):  # the same windows for every unit
        ids = torch.tensor([first.token_ids])
        fresh = source.activations(ids, [2])[2][0].clamp(-65504, 65504).half().float()
        for unit in range(300):
            ex = examples[unit][row]
            want = fresh[:, unit].tolist()
            if ex.bos:
                want[0] = 0.0  # readers show no activation on the BOS
            assert ex.acts == pytest.approx(want, abs=1e-3)
            checked += int(max(want) > 0)
    assert checked > 5  # the comparison saw real firing, not only zeros


def test_sparse_sample_resumes_bit_identically(lm: LoadedModel, tmp_path: Path) -> None:
    source = random_latents(lm, 200, k=8)
    whole = _record(lm, tmp_path / "whole", source)

    def crash(progress: dict[str, Any]) -> None:
        if progress["run_batches"] == 7:  # after the checkpoint at batch 6
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _record(lm, tmp_path / "crashed", source, on_batch=crash)
    resumed = _record(lm, tmp_path / "crashed", source)
    for layer in (0, 2):
        a = load_file(str(tmp_path / "whole" / "record" / f"layer_{layer}.safetensors"))
        b = load_file(str(tmp_path / "crashed" / "record" / f"layer_{layer}.safetensors"))
        assert sorted(a) == sorted(b)
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert whole.manifest["tokens"] == resumed.manifest["tokens"]
