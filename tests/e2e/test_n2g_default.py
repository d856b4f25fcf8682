"""N2G on the real default model: a layer-0 neuron's graph is built, saved, reloaded and predicts
the firings it was built from."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TEXTS = [
    "def read_file(path):\n    with open(path) as fh:\n        return fh.read()",
    "The quick brown fox jumps over the lazy dog, except on Sundays.",
    "import os\nimport sys\n\nfor name in os.listdir('.'):\n    print(name)",
]


def test_layer0_neuron_graph_on_default_model(tmp_path: Path) -> None:
    from neuron2graph.models import layer_activations, load_model, pad_batch
    from neuron2graph.n2g import NeuronGraph
    from neuron2graph.n2g.pipeline import N2GConfig, NeuronRequest, build_graphs
    from neuron2graph.tokens import token_pieces

    lm = load_model("smollm2-135m", device="cpu", dtype="fp32")
    bos = lm.tokenizer.bos_token_id
    examples = [[bos, *lm.tokenizer.encode(t, add_special_tokens=False)] for t in TEXTS]
    ids, mask = pad_batch(examples, 0)
    acts = layer_activations(lm, ids, [0], attention_mask=mask)[0]
    acts = acts * mask[..., None]
    acts[:, 0] = 0  # the BOS is not content
    neuron = int(acts.amax(dim=(0, 1)).argmax())
    a_max = float(acts[..., neuron].max())
    req = NeuronRequest(0, neuron, examples, a_max)
    res = build_graphs(lm, [req], N2GConfig(augmenter=None))[0]
    graph, stats = res.graph, res.stats
    assert not graph.is_empty() and stats.flags == []
    assert 0 < stats.token_layers < stats.official_token_layers
    graph.save(tmp_path / "g.json")
    loaded = NeuronGraph.load(tmp_path / "g.json")
    recalled = 0
    for ex, row in zip(examples, acts[..., neuron], strict=True):
        pieces = token_pieces(lm.tokenizer, ex)
        pred = loaded.predict(pieces)
        for j in range(1, len(ex)):
            if float(row[j]) / a_max >= 0.5:
                recalled += pred[j] >= 0.5
    assert recalled >= 1
