"""Decoding on the real default model (SmolLM2-135M): a layer decodes in seconds, the "water"
neuron found by weight search promotes water, and clamping it raises p(" water")."""

from __future__ import annotations

import pytest

from neuron2graph.decode import clamp_report, decode_layer, find_neurons, single_token_id
from neuron2graph.models import DEFAULT_ALIAS, LoadedModel, load_model
from neuron2graph.tokens import token_piece

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lm() -> LoadedModel:
    return load_model(DEFAULT_ALIAS, device="cpu")


def test_decode_one_layer(lm: LoadedModel) -> None:
    dec = decode_layer(lm, 23, top=5, kinds=["promote", "suppress"])
    assert dec.kinds["promote"].ids.shape == (1536, 5)
    row = dec.neuron(1413, lm.tokenizer)
    assert row["promote"][0]["token"].strip().lower() == "water"
    assert row["promote"][0]["logit"] > 0 > row["suppress"][0]["logit"]


def test_find_and_clamp_water_neuron(lm: LoadedModel) -> None:
    water = single_token_id(lm.tokenizer, " water")
    hits = find_neurons(lm, water, top=3)
    assert (hits[0]["layer"], hits[0]["neuron"]) == (23, 1413) and hits[0]["rank"] == 0
    rep = clamp_report(lm, 23, 1413, 30.0, "I went to the store to buy some", [water],
                       max_new_tokens=3)
    shift = rep.concepts[0]
    assert shift.token == token_piece(lm.tokenizer, water)
    assert shift.p_clamped > 10 * shift.p_base
    assert rep.top_clamped[0] == " water" != rep.top_base[0]
