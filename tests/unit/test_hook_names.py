"""Hook names from SAE releases (TransformerLens, sparsify) map to our (layer, point)."""

from __future__ import annotations

import pytest

from neuron2graph.errors import N2GError
from neuron2graph.models.hooks import HOOK_POINTS, parse_hook_name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("blocks.3.hook_resid_pre", (3, "resid_pre")),
        ("blocks.3.hook_resid_post", (3, "resid_post")),
        ("blocks.12.hook_mlp_out", (12, "mlp_out")),
        ("blocks.0.mlp.hook_post", (0, "mlp_post")),
        ("blocks.5.hook_mlp_in", (5, "mlp_in")),
        ("layers.7", (7, "resid_post")),
        ("layers.7.mlp", (7, "mlp_out")),
        ("model.layers.2.mlp", (2, "mlp_out")),
        ("gpt_neox.layers.4", (4, "resid_post")),
        (" 3.mlp_in ", (3, "mlp_in")),
    ],
)
def test_known_hook_names(name: str, expected: tuple[int, str]) -> None:
    assert parse_hook_name(name) == expected


@pytest.mark.parametrize(
    "name", ["blocks.3.attn.hook_z", "blocks.x.hook_resid_pre", "layers.3.attn", "3.mlp", "", "3"]
)
def test_unknown_hook_names_are_one_line_errors(name: str) -> None:
    with pytest.raises(N2GError, match="unknown hook name") as info:
        parse_hook_name(name)
    assert "\n" not in str(info.value)


def test_points_are_in_forward_order() -> None:
    assert HOOK_POINTS == ("resid_pre", "mlp_in", "mlp_post", "mlp_out", "resid_post")
