"""The unit seam on tiny random models: hook points read the right tensors, MlpNeurons equals
the neuron forward, the registry rebuilds sources, bad ids are one-line errors."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from neuron2graph.errors import N2GError
from neuron2graph.ids import UnitId
from neuron2graph.models import LoadedModel, layer_activations
from neuron2graph.models.hooks import HOOK_POINTS, capture
from neuron2graph.testing import FAMILIES, tiny_model
from neuron2graph.units import ActivationSource, make_source, source_for_run
from neuron2graph.units.neurons import MlpNeurons

_CACHE: dict[str, LoadedModel] = {}


def model(family: str) -> LoadedModel:
    if family not in _CACHE:
        _CACHE[family] = tiny_model(family, n_layers=3)
    return _CACHE[family]


def ids_for(lm: LoadedModel, n: int = 6) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randint(3, len(lm.tokenizer), (2, n), generator=gen)


def _reference(lm: LoadedModel, ids: torch.Tensor, layer: int) -> dict[str, torch.Tensor]:
    """Each point read by plain HF hooks on a *full* forward, independently of `capture`."""
    seen: dict[str, Any] = {}

    def keep(name: str, value: Any) -> None:
        seen.setdefault(name, value)

    block = lm.layer_modules[layer]
    hooks = [
        block.register_forward_pre_hook(
            lambda _m, a, k: keep("resid_pre", a[0] if a else k["hidden_states"]),
            with_kwargs=True),
        block.register_forward_hook(lambda _m, _a, o: keep("resid_post", o)),
        lm.sites.mlp_out(block).register_forward_pre_hook(lambda _m, a: keep("mlp_post", a[0])),
    ]
    try:
        with torch.inference_mode():
            hidden = lm.model(input_ids=ids, use_cache=False, output_hidden_states=True)
    finally:
        for h in hooks:
            h.remove()
    out = {k: (v[0] if isinstance(v, tuple) else v).reshape(*ids.shape, -1)
           for k, v in seen.items()}
    out["hidden_in"] = hidden.hidden_states[layer]
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_hook_points_read_the_residual_stream_and_neurons(family: str) -> None:
    lm = model(family)
    ids = ids_for(lm)
    got = capture(lm, ids, [(1, p) for p in HOOK_POINTS])
    ref = _reference(lm, ids, 1)
    assert set(got) == {(1, p) for p in HOOK_POINTS}
    torch.testing.assert_close(got[(1, "resid_pre")], ref["resid_pre"])
    torch.testing.assert_close(got[(1, "resid_pre")], ref["hidden_in"])  # HF's own hidden state
    torch.testing.assert_close(got[(1, "resid_post")], ref["resid_post"])
    torch.testing.assert_close(got[(1, "mlp_post")], ref["mlp_post"])
    d_model = lm.model.get_input_embeddings().weight.shape[1]  # type: ignore[union-attr,operator]
    for point in ("mlp_in", "mlp_out"):
        assert got[(1, point)].shape == (*ids.shape, d_model)
    # The MLP output is the down projection of the neurons (plus its bias).
    down = lm.sites.mlp_out(lm.layer_modules[1])
    with torch.inference_mode():
        expected = down(got[(1, "mlp_post")])
    torch.testing.assert_close(got[(1, "mlp_out")], expected)


@pytest.mark.parametrize("family", ["llama", "gpt2", "opt"])
def test_capture_stops_after_the_last_point(family: str) -> None:
    lm = model(family)
    calls: list[str] = []
    handle = lm.layer_modules[2].register_forward_hook(lambda *_: calls.append("layer2"))
    try:
        capture(lm, ids_for(lm), [(1, "resid_post"), (0, "mlp_in")])
        assert calls == []
        capture(lm, ids_for(lm), [(2, "resid_pre")])
        assert calls == []
    finally:
        handle.remove()


@pytest.mark.parametrize("family", FAMILIES)
def test_mlp_neurons_equal_the_neuron_forward(family: str) -> None:
    lm = model(family)
    source = make_source("neurons", lm)
    assert isinstance(source, MlpNeurons) and source.kind == "neurons" and source.site == "mlp"
    ids = ids_for(lm)
    got = source.activations(ids, [2, 0])
    ref = layer_activations(lm, ids, [0, 2])
    assert set(got) == {0, 2}
    for layer in (0, 2):
        assert torch.equal(got[layer], ref[layer])
        assert got[layer].shape[-1] == source.n_units(layer) == lm.n_neurons
    sub = source.activations(ids, [1], units={1: torch.tensor([5, 2])})[1]
    assert torch.equal(sub, ref_full(lm, ids, 1)[..., [5, 2]])
    seqs = [ids[0, :4].tolist(), ids[1].tolist()]
    per_seq = source.unit_activations(seqs, 1, [5, 2], batch_size=1)
    assert [tuple(a.shape) for a in per_seq] == [(4, 2), (6, 2)]
    torch.testing.assert_close(per_seq[1], ref_full(lm, ids, 1)[1][:, [5, 2]])


def ref_full(lm: LoadedModel, ids: torch.Tensor, layer: int) -> torch.Tensor:
    return layer_activations(lm, ids, [layer])[layer]


def test_directions_come_from_the_mlp_weights() -> None:
    lm = model("gpt2")  # Conv1D stores [in, out]: the layout trap
    source = make_source("neurons", lm)
    out = source.output_directions(1)
    assert out.shape == (lm.n_neurons, 32)
    c_proj: Any = lm.layer_modules[1].mlp.c_proj  # type: ignore[union-attr]
    assert torch.equal(source.output_direction(UnitId(1, 7)), c_proj.weight[7].detach())
    up, gate = source.input_directions(1)
    assert gate is None and up.shape == (lm.n_neurons, 32)
    lm2 = model("llama")
    up2, gate2 = make_source("neurons", lm2).input_directions(0)
    mlp: Any = lm2.layer_modules[0].mlp  # type: ignore[union-attr]
    assert gate2 is not None and torch.equal(up2, mlp.up_proj.weight.detach())


def test_bad_units_and_specs_are_one_line_errors() -> None:
    lm = model("llama")
    source = make_source(None, lm)
    with pytest.raises(N2GError, match=r"neuron 1:64 is out of range.*0\.\.63"):
        source.check(UnitId(1, 64))
    with pytest.raises(N2GError, match="layer 3 is out of range"):
        source.check(3)
    with pytest.raises(N2GError, match="out of range"):
        source.activations(ids_for(lm), [0], units={0: torch.tensor([0, 99])})
    with pytest.raises(N2GError, match="unknown unit kind 'bogus:x'"):
        make_source("bogus:x", lm)
    with pytest.raises(N2GError, match="takes no argument"):
        make_source("neurons:3", lm)


def test_old_runs_default_to_neurons_and_new_runs_name_theirs() -> None:
    lm = model("llama")
    assert isinstance(source_for_run({"format": "n2g-run"}, lm), MlpNeurons)
    assert isinstance(source_for_run({"units": "neurons"}, lm), MlpNeurons)
    assert make_source("neurons", lm).identity() == {
        "units": "neurons", "site": "mlp", "source": "neurons"}
    assert issubclass(MlpNeurons, ActivationSource)


def test_clamping_goes_through_the_source() -> None:
    lm = model("gpt2")
    source = make_source("neurons", lm)
    ids = ids_for(lm)
    with source.clamped(UnitId(1, 9), 3.5):
        inside = source.activations(ids, [1])[1]
    after = source.activations(ids, [1])[1]
    assert bool((inside[..., 9] == 3.5).all()) and not bool((after[..., 9] == 3.5).all())
    assert torch.equal(inside[..., :9], after[..., :9])
    with pytest.raises(N2GError, match="out of range"), source.clamped(UnitId(1, 64), 1.0):
        pass
