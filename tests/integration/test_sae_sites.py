"""SAE sites on tiny models of several families: reading each site, the model checks, steering."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.unit.test_sae_loading import write_saelens

from neuron2graph.errors import N2GError
from neuron2graph.models import layer_activations
from neuron2graph.sae import HookPoint, check_against_model, load_saes
from neuron2graph.sae.sites import added_at, site_activations, site_width
from neuron2graph.testing import tiny_model

IDS = torch.tensor([[1, 5, 30, 31, 12, 9], [1, 7, 8, 9, 10, 11]])


@pytest.mark.parametrize("family", ["llama", "gpt2", "opt", "gpt_neox"])
def test_sites_match_the_layer_outputs(family: str) -> None:
    lm = tiny_model(family, n_layers=3)  # layer 1's output is then not the final-normed one
    points = [HookPoint(1, s) for s in ("resid_pre", "mlp_in", "mlp_post", "mlp_out", "resid_post")]
    acts = site_activations(lm, IDS, points)
    with torch.no_grad():
        hidden = lm.model(input_ids=IDS, output_hidden_states=True).hidden_states
    torch.testing.assert_close(acts[points[0]], hidden[1])  # input of layer 1
    torch.testing.assert_close(acts[points[4]], hidden[2])
    neurons = layer_activations(lm, IDS, [1])[1]
    torch.testing.assert_close(acts[points[2]], neurons)
    assert acts[points[1]].shape[-1] == acts[points[3]].shape[-1] == 32
    assert site_width(lm, points[2]) == 64


def test_model_checks_name_the_mismatch(tmp_path: Path) -> None:
    lm = tiny_model("llama")
    write_saelens(tmp_path / "ok", hook="blocks.1.hook_resid_post", d_in=32)
    [sae] = load_saes(tmp_path / "ok")
    check_against_model(sae, lm, site_width(lm, sae.info.reads))
    write_saelens(tmp_path / "wide", hook="blocks.1.hook_resid_post", d_in=16)
    [wide] = load_saes(tmp_path / "wide")
    with pytest.raises(N2GError, match="has d_in=16, but tiny-llama is 32 wide"):
        check_against_model(wide, lm, site_width(lm, wide.info.reads))
    write_saelens(tmp_path / "deep", hook="blocks.9.hook_resid_post", d_in=32)
    [deep] = load_saes(tmp_path / "deep")
    with pytest.raises(N2GError, match=r"reads layer 9, but tiny-llama has layers 0\.\.1"):
        check_against_model(deep, lm, 32)
    write_saelens(tmp_path / "gpt", hook="blocks.1.hook_resid_post", d_in=32,
                  model_name="gpt2-small")
    [other] = load_saes(tmp_path / "gpt")
    with pytest.raises(N2GError, match="made for model 'gpt2-small', not 'tiny-llama'"):
        check_against_model(other, lm, 32)


def test_added_at_steers_the_residual() -> None:
    lm = tiny_model("llama")
    point = HookPoint(0, "mlp_out")
    delta = torch.randn(32)
    base = site_activations(lm, IDS, [HookPoint(1, "resid_pre")])[HookPoint(1, "resid_pre")]
    with added_at(lm, point, delta):
        moved = site_activations(lm, IDS, [HookPoint(1, "resid_pre")])[HookPoint(1, "resid_pre")]
    torch.testing.assert_close(moved - base, delta.expand_as(base), atol=1e-5, rtol=1e-5)
