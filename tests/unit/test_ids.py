"""Neuron ids are written L:N everywhere; layer lists accept ranges."""

from __future__ import annotations

import pytest

from neuron2graph.errors import N2GError
from neuron2graph.ids import NeuronId, UnitId, layer_option, parse_layers


def test_parse_and_str_round_trip() -> None:
    nid = NeuronId.parse("3:41")
    assert nid == NeuronId(3, 41)
    assert str(nid) == "3:41"
    assert NeuronId.parse(str(NeuronId(12, 0))) == NeuronId(12, 0)


def test_parse_tolerates_spaces() -> None:
    assert NeuronId.parse(" 3 : 41 ") == NeuronId(3, 41)


@pytest.mark.parametrize("text", ["3", "3:", ":4", "a:b", "3:4:5", "-1:4", "3:-4", "3.0:4", ""])
def test_parse_rejects_bad_ids(text: str) -> None:
    with pytest.raises(N2GError, match="LAYER:NEURON"):
        NeuronId.parse(text)


def test_ids_order_by_layer_then_neuron() -> None:
    assert sorted([NeuronId(2, 1), NeuronId(1, 9), NeuronId(1, 2)]) == [
        NeuronId(1, 2), NeuronId(1, 9), NeuronId(2, 1),
    ]


def test_parse_list_keeps_order_and_drops_duplicates() -> None:
    assert NeuronId.parse_list("3:41, 0:1,3:41,,2:7") == [
        NeuronId(3, 41), NeuronId(0, 1), NeuronId(2, 7),
    ]


@pytest.mark.parametrize("text", ["", " , ,"])
def test_parse_list_empty(text: str) -> None:
    with pytest.raises(N2GError, match="no neuron ids"):
        NeuronId.parse_list(text)


def test_parse_list_bad_member_names_it() -> None:
    with pytest.raises(N2GError, match="'x:1'"):
        NeuronId.parse_list("1:2,x:1")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0,1,2", [0, 1, 2]),
        ("0-3", [0, 1, 2, 3]),
        ("0-3,10", [0, 1, 2, 3, 10]),
        ("5,1,5,1-2", [1, 2, 5]),
        (" 7 ", [7]),
        ("4-4", [4]),
    ],
)
def test_parse_layers(text: str, expected: list[int]) -> None:
    assert parse_layers(text) == expected


@pytest.mark.parametrize("text", ["a", "3-1", "1-", "1-x", "1.5", "0,,b"])
def test_parse_layers_rejects_bad_lists(text: str) -> None:
    with pytest.raises(N2GError, match="bad layer list"):
        parse_layers(text)


def test_parse_layers_empty() -> None:
    with pytest.raises(N2GError, match="no layers"):
        parse_layers(" , ")


def test_parse_layers_negative() -> None:
    # "-1" parses as an empty low bound; either way it must be rejected, never read as layer 1.
    with pytest.raises(N2GError):
        parse_layers("-1")


@pytest.mark.parametrize("text", [None, "all", " ALL "])
def test_layer_option_all_means_every_layer(text: str | None) -> None:
    assert layer_option(text) is None


def test_layer_option_parses_lists_and_names_all_in_its_error() -> None:
    assert layer_option("0-2,5") == [0, 1, 2, 5]
    for bad in ("al", "all,3", "0-x"):
        with pytest.raises(N2GError, match=r"^bad layer list .*or all$"):
            layer_option(bad)


def test_unit_ids_carry_a_site_and_a_qualified_form() -> None:
    uid = UnitId(3, 41)
    assert uid.site == "mlp" and uid.neuron == uid.index == 41
    assert str(uid) == "3:41" and uid.qualified == "mlp/3:41"
    assert UnitId.parse("mlp/3:41") == uid == NeuronId(3, 41)
    latent = UnitId.parse("sae.layers.3/3:60000")
    assert latent == UnitId(3, 60000, "sae.layers.3") and latent != UnitId(3, 60000)
    assert UnitId.parse(latent.qualified) == latent and str(latent) == "3:60000"
    assert UnitId.parse("3:7", site="resid_post") == UnitId(3, 7, "resid_post")
    assert UnitId.parse_list("x/1:2, 1:2", site="x") == [UnitId(1, 2, "x")]


@pytest.mark.parametrize("text", ["/3:4", "a b/3:4", "mlp/3", "mlp/", "a:b/3:4"])
def test_parse_rejects_bad_qualified_ids(text: str) -> None:
    with pytest.raises(N2GError, match="LAYER:NEURON"):
        UnitId.parse(text)


def test_bad_site_is_one_line() -> None:
    with pytest.raises(N2GError, match="bad unit site"):
        UnitId(1, 2, "a/b")
