"""`sae:PATH` as a unit source: an identity SAE on the MLP neurons reads exactly the neurons; a
planted latent (a residual direction one token writes) fires on that token and nowhere else."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neuron2graph.errors import N2GError
from neuron2graph.sae import HookPoint, Sae, SaeInfo, random_like
from neuron2graph.sae.export import save_saelens
from neuron2graph.testing import tiny_model, token_id
from neuron2graph.units import make_source

IDS = torch.tensor([[1, 5, 30, 31, 12, 9, 40], [1, 7, 8, 9, 10, 11, 30]])


def _identity_sae(d: int, layer: int) -> Sae:
    point = HookPoint(layer, "mlp_post")
    info = SaeInfo(d_in=d, d_sae=d, d_out=d, architecture="relu", reads=point, writes=point,
                   apply_b_dec_to_input=False)
    eye = torch.eye(d)
    return Sae(info, eye, torch.zeros(d), eye, torch.zeros(d))


def test_identity_sae_reads_exactly_the_relu_of_the_neurons(tmp_path: Path) -> None:
    lm = tiny_model("gpt2")  # GELU neurons: mostly positive, some negative
    save_saelens(_identity_sae(lm.n_neurons, 1), tmp_path / "id")
    sae_src, neurons = make_source(f"sae:{tmp_path / 'id'}", lm), make_source("neurons", lm)
    assert sae_src.layers() == [1] and sae_src.n_units(1) == lm.n_neurons
    got = sae_src.activations(IDS, [1])[1]
    want = neurons.activations(IDS, [1])[1]
    assert torch.equal(got, want.clamp_min(0))  # ReLU of the neurons, bit for bit
    pick = torch.tensor([3, 17, 40])
    assert torch.equal(sae_src.activations(IDS, [1], units={1: pick})[1], got[..., pick])
    assert torch.equal(sae_src.output_directions(1), neurons.output_directions(1))
    with pytest.raises(N2GError, match="layer 0 is out of range"):
        sae_src.activations(IDS, [0])


def test_planted_latent_fires_on_its_token(tmp_path: Path) -> None:
    lm = tiny_model("llama")
    cat = token_id(lm, "cat")
    embed = lm.model.get_input_embeddings().weight.detach()  # type: ignore[operator,union-attr]
    d, n = embed.shape[1], 16
    g = torch.Generator().manual_seed(0)
    W_enc = torch.randn(d, n, generator=g) * 0.01
    direction = embed[cat] / embed[cat].norm()
    W_enc[:, 5] = direction  # latent 5 reads the 'cat' embedding direction at resid_pre of 0
    reads = embed @ direction  # what latent 5 reads for every token
    others = torch.cat([reads[:cat], reads[cat + 1 :]])
    assert float(reads[cat]) > float(others.max())
    bias = torch.zeros(n)
    bias[5] = -0.5 * (float(reads[cat]) + float(others.max()))  # only 'cat' clears it
    point = HookPoint(0, "resid_pre")
    info = SaeInfo(d_in=d, d_sae=n, d_out=d, architecture="relu", reads=point, writes=point,
                   apply_b_dec_to_input=False)
    save_saelens(Sae(info, W_enc, bias, W_enc.T.clone(), torch.zeros(d)), tmp_path / "p")
    src = make_source(f"sae:{tmp_path / 'p'}", lm)
    ids = torch.tensor([[1, 5, cat, 31, cat, 9]])
    acts = src.activations(ids, [0])[0][0, :, 5]
    assert (acts > 0).tolist() == [False, False, True, False, True, False]
    rnd = random_like(src.saes[0], seed=1)  # type: ignore[attr-defined]
    save_saelens(rnd, tmp_path / "r")
    control = make_source(f"sae:{tmp_path / 'r'}", lm).activations(ids, [0])[0][0, :, 5]
    assert (control > 0).tolist() != [False, False, True, False, True, False]


def test_bad_specs(tmp_path: Path) -> None:
    lm = tiny_model("llama")
    with pytest.raises(N2GError, match="needs a folder"):
        make_source("sae", lm)
    with pytest.raises(N2GError, match="no SAE folder"):
        make_source(f"sae:{tmp_path / 'nope'}", lm)
    save_saelens(_identity_sae(lm.n_neurons + 1, 0), tmp_path / "wide")
    with pytest.raises(N2GError, match="has d_in=65, but tiny-llama is 64 wide"):
        make_source(f"sae:{tmp_path / 'wide'}", lm)


def test_recording_an_identity_sae_keeps_the_neurons_top_examples(tmp_path: Path) -> None:
    """Recorded through `record(source=...)`: same top windows and per-token activations as the
    neurons (wherever the neuron's window max is positive, ReLU changes nothing there)."""
    import numpy as np
    from tests.integration.record_fixtures import tiny_documents

    from neuron2graph.corpus import iter_windows
    from neuron2graph.record import RecordConfig, record
    from neuron2graph.store import Run

    lm = tiny_model("llama")  # SiLU-gated neurons: both signs
    save_saelens(_identity_sae(lm.n_neurons, 1), tmp_path / "id")
    config = RecordConfig(window=16, top_k=5, sample=8, batch_size=4, max_tokens=2000)

    def run(out: str, source: object) -> Run:
        windows = iter_windows(tiny_documents(), lm.tokenizer, length=16, bos="always")
        return record(lm, windows, [1], tmp_path / out, config, progress=False,
                      source=source)  # type: ignore[arg-type]

    neurons = run("neurons", None)
    latents = run("latents", make_source(f"sae:{tmp_path / 'id'}", lm))
    assert latents.manifest["units"] == "sae" and latents.n_neurons == lm.n_neurons
    compared = 0
    for index in range(lm.n_neurons):
        want = neurons.top_examples(_nid(1, index))
        if not want or want[-1].max_act <= 0:
            continue  # below zero the ReLU ties windows at 0 and the order may differ
        got = latents.top_examples(_nid(1, index))
        assert [e.window for e in got] == [e.window for e in want]
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(np.asarray(g.acts), np.maximum(np.asarray(w.acts), 0))
        compared += 1
    assert compared > lm.n_neurons // 2


def _nid(layer: int, index: int) -> object:
    from neuron2graph.ids import NeuronId

    return NeuronId(layer, index)


def test_n2g_builds_the_graph_of_a_planted_latent_not_of_the_neuron(tmp_path: Path) -> None:
    """The N2G pipeline reads the run's units through the source: a graph built for latent 5
    of the planted coder fires on 'cat' (what the latent reads) and nowhere else."""
    from neuron2graph.n2g.pipeline import N2GConfig, NeuronRequest, build_graphs

    lm = tiny_model("llama")
    cat = token_id(lm, "cat")
    embed = lm.model.get_input_embeddings().weight.detach()  # type: ignore[operator,union-attr]
    d, n = embed.shape[1], 16
    W_enc = torch.randn(d, n, generator=torch.Generator().manual_seed(0)) * 0.01
    direction = embed[cat] / embed[cat].norm()
    W_enc[:, 5] = direction
    reads = embed @ direction
    others = torch.cat([reads[:cat], reads[cat + 1 :]])
    bias = torch.zeros(n)
    bias[5] = -0.5 * (float(reads[cat]) + float(others.max()))
    point = HookPoint(0, "resid_pre")
    info = SaeInfo(d_in=d, d_sae=n, d_out=d, architecture="relu", reads=point, writes=point,
                   apply_b_dec_to_input=False)
    save_saelens(Sae(info, W_enc, bias, W_enc.T.clone(), torch.zeros(d)), tmp_path / "p")
    src = make_source(f"sae:{tmp_path / 'p'}", lm)
    examples = [[1, 5, 7, cat, 9], [1, 12, cat, 30, 31], [1, 40, 41, 42, cat]]
    a_max = float(src.activations(torch.tensor(examples), [0])[0][:, :, 5].max())
    assert a_max > 0
    graph = build_graphs(lm, [NeuronRequest(0, 5, examples, a_max)],
                         N2GConfig(augmenter=None), source=src)[0].graph
    tokens = [lm.tokenizer.decode([t]) for t in [1, 20, cat, 21, 22, cat]]
    fired = [p > 0.5 for p in graph.predict(tokens)]
    assert fired == [False, False, True, False, False, True]
