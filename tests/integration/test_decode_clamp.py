"""Clamping on tiny models: the hook gives exactly the model whose weights were edited to clamp,
and, for the last layer, exactly the logits computed by hand from the residual stream."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

from neuron2graph.decode import clamp_report, clamped
from neuron2graph.models import wrap_model
from neuron2graph.testing import tiny_model

IDS = torch.tensor([[1, 5, 30, 31, 12, 9]])


def _logits(lm: Any) -> torch.Tensor:
    with torch.no_grad():
        return lm.model(input_ids=IDS).logits[0].float()  # type: ignore[no-any-return]


@pytest.mark.parametrize("value", [0.0, 3.5, -2.0])
def test_clamp_equals_weight_edit(value: float) -> None:
    """x_n := V before down_proj equals: zero column n, and add V * column n as a bias."""
    lm = tiny_model("llama")
    layer, neuron = 0, 11
    edited: Any = copy.deepcopy(lm.model)
    old = edited.model.layers[layer].mlp.down_proj
    new = nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        new.weight.copy_(old.weight)
        new.weight[:, neuron] = 0
        new.bias.copy_(value * old.weight[:, neuron])
    edited.model.layers[layer].mlp.down_proj = new
    edited_lm = wrap_model(edited, lm.tokenizer)
    base = _logits(lm)
    with clamped(lm, layer, neuron, value):
        got = _logits(lm)
    torch.testing.assert_close(got, _logits(edited_lm), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, base, atol=1e-4)  # the clamp did something
    torch.testing.assert_close(_logits(lm), base)  # and the hook is gone afterwards


def test_clamp_last_layer_by_hand() -> None:
    """Clamping the last layer moves the final residual by (V - a) * w_out, nothing else."""
    lm = tiny_model("llama", n_layers=1)
    m: Any = lm.model
    layer, neuron, value = 0, 7, 4.0
    seen: dict[str, torch.Tensor] = {}
    h1 = m.model.norm.register_forward_pre_hook(
        lambda _m, a: seen.__setitem__("resid", a[0].detach().clone())
    )
    h2 = m.model.layers[0].mlp.down_proj.register_forward_pre_hook(
        lambda _m, a: seen.__setitem__("acts", a[0].detach().clone())
    )
    _logits(lm)
    h1.remove()
    h2.remove()
    w = m.model.layers[0].mlp.down_proj.weight.detach()[:, neuron]
    delta = (value - seen["acts"][..., neuron]).unsqueeze(-1) * w
    with torch.no_grad():
        expected = m.lm_head(m.model.norm(seen["resid"] + delta))[0]
    with clamped(lm, layer, neuron, value):
        got = _logits(lm)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)

    report = clamp_report(lm, layer, neuron, value, "the dog sat", [30, 31], max_new_tokens=3)
    prompt_ids = lm.tokenizer("the dog sat", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        p_base = m(input_ids=prompt_ids).logits[0, -1].softmax(-1)
    assert [c.token_id for c in report.concepts] == [30, 31]
    assert report.concepts[0].p_base == pytest.approx(float(p_base[30]), rel=1e-5)
    assert report.concept_mass_base == pytest.approx(float(p_base[[30, 31]].sum()), rel=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_huge_clamp_emits_the_decoded_top_token(family: str) -> None:
    """Clamped hard, a last-layer neuron dominates the final residual, so the next token is the
    top token its weights decode to: decoding and clamping agree."""
    from neuron2graph.decode import neuron_logits
    from neuron2graph.tokens import token_piece

    lm = tiny_model(family)
    top = int(neuron_logits(lm, 1, 3).argmax())
    rep = clamp_report(lm, 1, 3, 1e4, "the cat", [top], max_new_tokens=4)
    assert rep.top_clamped[0] == token_piece(lm.tokenizer, top)
    assert rep.to_dict()["concepts"][0]["delta"] == pytest.approx(
        rep.concepts[0].p_clamped - rep.concepts[0].p_base
    )
