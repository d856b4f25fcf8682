"""Decoding on tiny random-init models: equals a direct computation from the weights, is independent
of chunk sizes, find-neurons equals brute force, and the run store round-trips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from neuron2graph.decode import (
    decode_layer,
    decoded_tokens,
    find_neurons,
    load_layer,
    save_layer,
)
from neuron2graph.decode.stage import check_same_model, create_decode_run
from neuron2graph.models.loading import LoadedModel
from neuron2graph.testing import tiny_model


def _randomise_norm(lm: LoadedModel) -> None:
    """Init sets norm gains to 1 (0 for Gemma): randomise them so that a missing gain is caught."""
    norm: Any = lm.sites.final_norm(lm.model)
    assert norm is not None
    torch.manual_seed(123)
    with torch.no_grad():
        norm.weight.copy_(torch.rand_like(norm.weight) * 2 + 0.1)


def _expected(lm: LoadedModel, layer: int, family: str) -> dict[str, torch.Tensor]:
    """Full logits [neurons, vocab] per kind, computed straight from the named weights."""
    m: Any = lm.model
    unembed = m.get_output_embeddings().weight.detach()
    if family == "llama":
        mlp = m.model.layers[layer].mlp
        gain = m.model.norm.weight.detach()
        write = mlp.down_proj.weight.detach().T  # Linear [d, N] -> [N, d]
        reads = {"read": mlp.up_proj.weight.detach(), "read_gate": mlp.gate_proj.weight.detach()}
        centre = False
    elif family == "gemma":
        mlp = m.model.layers[layer].mlp
        gain = 1 + m.model.norm.weight.detach()
        write = mlp.down_proj.weight.detach().T
        reads = {"read": mlp.up_proj.weight.detach(), "read_gate": mlp.gate_proj.weight.detach()}
        centre = False
    elif family == "gpt2":
        mlp = m.transformer.h[layer].mlp
        gain = m.transformer.ln_f.weight.detach()
        write = mlp.c_proj.weight.detach()  # Conv1D [N, d]
        reads = {"read": mlp.c_fc.weight.detach().T}  # Conv1D [d, N]
        centre = True
    elif family == "gpt_neox":
        mlp = m.gpt_neox.layers[layer].mlp
        gain = m.gpt_neox.final_layer_norm.weight.detach()
        write = mlp.dense_4h_to_h.weight.detach().T
        reads = {"read": mlp.dense_h_to_4h.weight.detach()}
        centre = True
    else:
        raise AssertionError(family)

    def through(x: torch.Tensor) -> torch.Tensor:
        if centre:
            x = x - x.mean(dim=1, keepdim=True)
        return (x * gain) @ unembed.T

    out = {"promote": through(write), "suppress": through(write)}
    out.update({k: through(v) for k, v in reads.items()})
    return out


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox", "gemma"])
def test_decoding_matches_direct_computation(family: str) -> None:
    lm = tiny_model(family)
    _randomise_norm(lm)
    k = 4
    for layer in range(lm.n_layers):
        dec = decode_layer(lm, layer, top=k)
        want = _expected(lm, layer, family)
        assert set(dec.kinds) == set(want)
        for kind, logits in want.items():
            ref = logits.topk(k, dim=1, largest=kind != "suppress")
            assert torch.equal(dec.kinds[kind].ids, ref.indices), (family, layer, kind)
            torch.testing.assert_close(dec.kinds[kind].values, ref.values, rtol=1e-4, atol=1e-5)


def test_gain_matters_in_this_test() -> None:
    """Guard: with randomised gains, ignoring the gain gives other tokens (the test can fail)."""
    lm = tiny_model("llama")
    _randomise_norm(lm)
    model: Any = lm.model
    raw = model.model.layers[0].mlp.down_proj.weight.detach().T
    no_gain = (raw @ model.lm_head.weight.detach().T).topk(4, dim=1).indices
    assert not torch.equal(decode_layer(lm, 0, top=4).kinds["promote"].ids, no_gain)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_chunk_sizes_do_not_change_results(family: str) -> None:
    lm = tiny_model(family)
    _randomise_norm(lm)
    ref = decode_layer(lm, 1, top=5)
    for neuron_chunk, vocab_chunk in [(1, 5), (7, 11), (64, 3), (13, 1000)]:
        dec = decode_layer(lm, 1, top=5, neuron_chunk=neuron_chunk, vocab_chunk=vocab_chunk)
        for kind, tk in ref.kinds.items():
            assert torch.equal(dec.kinds[kind].ids, tk.ids), (neuron_chunk, vocab_chunk, kind)
            torch.testing.assert_close(dec.kinds[kind].values, tk.values, rtol=1e-5, atol=1e-6)


def test_neuron_subset_matches_full_layer() -> None:
    lm = tiny_model("llama")
    full = decode_layer(lm, 0, top=3)
    sub = decode_layer(lm, 0, top=3, neurons=[9, 2, 40])
    for kind, tk in full.kinds.items():
        assert torch.equal(sub.kinds[kind].ids, tk.ids[[9, 2, 40]])


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("by", ["logit", "zscore"])
def test_find_neurons_matches_brute_force(family: str, by: str) -> None:
    lm = tiny_model(family, n_layers=3)
    _randomise_norm(lm)
    token = 30
    scores = []
    for layer in range(lm.n_layers):
        logits = _expected(lm, layer, family)["promote"]  # [neurons, vocab], all of it
        z = (logits[:, token] - logits.mean(1)) / logits.std(1, unbiased=False)
        for n in range(logits.shape[0]):
            raw, zs = float(logits[n, token]), float(z[n])
            scores.append((zs if by == "zscore" else raw, raw, zs, layer, n))
    scores.sort(reverse=True)
    hits = find_neurons(lm, token, top=10, by=by)
    assert [(h["layer"], h["neuron"]) for h in hits] == [(s[3], s[4]) for s in scores[:10]]
    for h, (_, raw, zs, layer, neuron) in zip(hits, scores, strict=False):
        assert h["logit"] == pytest.approx(raw, abs=1e-4)
        assert h["zscore"] == pytest.approx(zs, rel=1e-3)
        row = _expected(lm, layer, family)["promote"][neuron]
        assert h["rank"] == int((row > row[token]).sum())


def test_run_store_round_trip(tmp_path: Path) -> None:
    lm = tiny_model("llama")
    run = tmp_path / "run"
    conn = create_decode_run(run, lm).db()
    dec = decode_layer(lm, 1, top=4)
    path = save_layer(run, dec, lm, conn)
    assert path == run / "decode" / "layer_001.safetensors"
    back = load_layer(run, 1)
    for kind, tk in dec.kinds.items():
        assert torch.equal(back.kinds[kind].ids, tk.ids)
        assert torch.equal(back.kinds[kind].values, tk.values)
    from neuron2graph.store.run import Run

    opened = Run.open(run)  # a decode-only run is a valid run for every reader
    assert decoded_tokens(opened, 1, 17) == decoded_tokens(run, 1, 17)
    assert opened.layers == [] and opened.manifest["n_neurons"] == lm.n_neurons
    assert (run / "tokenizer" / "tokenizer.json").is_file()
    got = decoded_tokens(run, 1, 17)
    want = dec.neuron(17, lm.tokenizer)
    assert list(got) == ["promote", "suppress", "read", "read_gate"]
    for kind, rows in want.items():
        assert [r["token_id"] for r in got[kind]] == [r["token_id"] for r in rows]
        assert [r["token"] for r in got[kind]] == [r["token"] for r in rows]
        assert [r["logit"] for r in got[kind]] == pytest.approx([r["logit"] for r in rows])
    n_rows = conn.execute("SELECT COUNT(*) FROM decode").fetchone()[0]
    assert n_rows == 4 * 4 * lm.n_neurons  # 4 kinds x top 4 x neurons


def test_out_folder_checks(tmp_path: Path) -> None:
    from neuron2graph.errors import N2GError

    lm = tiny_model("llama")
    made = create_decode_run(tmp_path / "run", lm)
    other = tiny_model("llama", n_layers=3)
    with pytest.raises(N2GError, match="another model"):
        check_same_model(made, other)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(N2GError, match="not a run"):
        create_decode_run(tmp_path / "junk", lm)
