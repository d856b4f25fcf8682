"""Record the real default model briefly and check examples against a fresh forward."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neuron2graph.corpus import describe_corpus, iter_documents, iter_windows
from neuron2graph.models import layer_activations, load_model
from neuron2graph.record import RecordConfig, record


@pytest.mark.slow
def test_record_default_model(tmp_path: Path) -> None:
    lm = load_model("smollm2-135m", device="cpu")
    windows = iter_windows(iter_documents("default"), lm.tokenizer, length=64)
    config = RecordConfig(top_k=5, sample=16, batch_size=16, max_tokens=2048)
    run = record(lm, windows, [1], tmp_path / "run", config, progress=False,
                 corpus=describe_corpus("default"))
    assert run.manifest["tokens"] == 2048 and run.n_neurons == 1536
    stats = run.stats(1)
    assert np.isfinite(stats["max"]).all() and (stats["density"] > 0).mean() > 0.9
    for neuron in (0, 777):
        examples = run.top_examples((1, neuron))
        assert len(examples) == 5 and examples[0].bos
        ids = torch.tensor([e.token_ids for e in examples])
        fresh = layer_activations(lm, ids, [1])[1][:, 1:, neuron].numpy()
        np.testing.assert_allclose([e.acts[1:] for e in examples], fresh, rtol=1e-3, atol=1e-4)
        assert "".join(examples[0].tokens[1:]).strip()  # real text, decoded
