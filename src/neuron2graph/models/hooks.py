"""Named hook points on the HF modules of every registered architecture, and a truncated forward.

Five points per decoder layer, named as in TransformerLens but without its module paths:

- `resid_pre`: the residual stream entering the layer (the layer's input);
- `mlp_in`: the MLP's input, after the layer's pre-MLP norm;
- `mlp_post`: the neurons: the input of the MLP output projection (after the non-linearity and
  the gate); this is what `MlpNeurons` reads;
- `mlp_out`: the MLP's output, before it is added to the residual stream (Gemma-2's
  post-feed-forward norm, if any, comes after it);
- `resid_post`: the residual stream leaving the layer (the layer's output).

`capture` reads any set of points with one forward pass that stops as soon as the last wanted
point has been read: no later layer, final norm or LM head runs. `parse_hook_name` maps the names
that SAE releases use (TransformerLens `blocks.L.hook_resid_pre`, `blocks.L.mlp.hook_post`...,
sparsify `layers.L`, `layers.L.mlp`) to `(layer, point)`, so SAE sources hook the right tensor.
Where the modules are comes from the one architecture registry, `models/sites.py`.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal, cast

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from neuron2graph.errors import N2GError
from neuron2graph.models.loading import LoadedModel

HookPoint = Literal["resid_pre", "mlp_in", "mlp_post", "mlp_out", "resid_post"]
HOOK_POINTS: tuple[HookPoint, ...] = ("resid_pre", "mlp_in", "mlp_post", "mlp_out", "resid_post")

_TL = {
    "hook_resid_pre": "resid_pre",
    "hook_resid_post": "resid_post",
    "hook_mlp_out": "mlp_out",
    "hook_mlp_in": "mlp_in",
    "ln2.hook_normalized": "mlp_in",
    "mlp.hook_post": "mlp_post",
}
_TL_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")
_SPARSIFY_RE = re.compile(r"^(?:(?:model|gpt_neox|transformer)\.)?(?:layers|h)\.(\d+)(\.mlp)?$")


def parse_hook_name(name: str) -> tuple[int, HookPoint]:
    """`(layer, point)` for a TransformerLens or sparsify hook name; one-line error otherwise.

    TransformerLens: `blocks.L.hook_resid_pre`, `blocks.L.hook_resid_post`,
    `blocks.L.hook_mlp_out`, `blocks.L.hook_mlp_in`, `blocks.L.mlp.hook_post`. Sparsify names a
    module whose *output* the SAE was trained on: `layers.L` is the layer's output (resid_post),
    `layers.L.mlp` the MLP's output (mlp_out). Our own `L.point` form is accepted too.
    """
    text = name.strip()
    match = _TL_RE.match(text)
    if match and match.group(2) in _TL:
        return int(match.group(1)), cast(HookPoint, _TL[match.group(2)])
    match = _SPARSIFY_RE.match(text)
    if match:
        return int(match.group(1)), "mlp_out" if match.group(2) else "resid_post"
    layer, _, point = text.partition(".")
    if layer.isdigit() and point in HOOK_POINTS:
        return int(layer), cast(HookPoint, point)
    raise N2GError(
        f"unknown hook name {name!r}: use a TransformerLens name (blocks.3.hook_resid_post, "
        "blocks.3.mlp.hook_post, ...), a sparsify name (layers.3, layers.3.mlp) or 3.mlp_out"
    )


def point_module(lm: LoadedModel, layer: int, point: HookPoint) -> tuple[nn.Module, bool]:
    """The module whose input (`True`) or output (`False`) is `point` of `layer`."""
    block = lm.layer_modules[layer]
    if point == "resid_pre":
        return block, True
    if point == "resid_post":
        return block, False
    if point == "mlp_in":
        return lm.sites.mlp_entry(block), True
    if point == "mlp_post":
        return lm.sites.mlp_out(block), True
    if point == "mlp_out":
        return lm.sites.mlp_exit(block), False
    raise N2GError(f"unknown hook point {point!r}: use one of {', '.join(HOOK_POINTS)}")


class _StopForward(Exception):
    pass


def _check_layer(lm: LoadedModel, layer: int) -> None:
    if not 0 <= layer < lm.n_layers:
        raise N2GError(
            f"layer {layer} is out of range: {lm.spec} has layers 0..{lm.n_layers - 1}"
        )


Transform = Callable[[Float[Tensor, "batch pos d"]], Tensor]


@torch.inference_mode()
def capture(
    lm: LoadedModel,
    input_ids: Int[Tensor, "batch pos"],
    points: Sequence[tuple[int, HookPoint]],
    *,
    attention_mask: Int[Tensor, "batch pos"] | None = None,
    transform: dict[tuple[int, HookPoint], Transform] | None = None,
    cache: Any = None,
) -> dict[tuple[int, HookPoint], Tensor]:
    """Read `points` (as `(layer, point)`) in one forward that stops after the last one.

    Each captured tensor is `[batch, pos, width]` in the model's dtype, on the model's device;
    `transform[(layer, point)]`, when given, is applied inside the hook (so an SAE encoder or a
    unit subset never keeps the full-width tensor). Padding must be on the right.

    `cache`, a transformers KV cache (`DynamicCache`), is passed to the forward: the layers that
    run before the stop append their keys and values to it (so a later call can continue from
    this prefix), and keys already in it are the context of `input_ids`, whose positions then
    start after them. N2G's saliency runs masked variants this way (`n2g/prefix.py`).
    """
    wanted = list(dict.fromkeys((int(layer), point) for layer, point in points))
    if not wanted:
        return {}
    for layer, point in wanted:
        _check_layer(lm, layer)
        if point not in HOOK_POINTS:
            raise N2GError(f"unknown hook point {point!r}: use one of {', '.join(HOOK_POINTS)}")
    out: dict[tuple[int, HookPoint], Tensor] = {}
    shape = tuple(input_ids.shape)

    def store(key: tuple[int, HookPoint], value: Any) -> None:
        if isinstance(value, tuple):
            value = value[0]
        if value.dim() == 2:  # OPT flattens (batch, pos) before its MLP
            value = value.reshape(*shape, value.shape[-1])
        if transform and key in transform:
            value = transform[key](value)
        out[key] = value
        if len(out) == len(wanted):
            raise _StopForward

    def pre_hook(key: tuple[int, HookPoint]) -> Callable[..., Any]:
        def hook(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            store(key, args[0] if args else kwargs["hidden_states"])

        return hook

    def post_hook(key: tuple[int, HookPoint]) -> Callable[..., Any]:
        def hook(_module: Any, _args: Any, output: Any) -> None:
            store(key, output)

        return hook

    handles = []
    try:
        for key in wanted:
            module, is_input = point_module(lm, *key)
            if is_input:
                handles.append(module.register_forward_pre_hook(pre_hook(key), with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(post_hook(key)))
        extra = {} if cache is None else {cache_kwarg(lm.model): cache}
        lm.model(
            input_ids=input_ids.to(lm.device),
            attention_mask=None if attention_mask is None else attention_mask.to(lm.device),
            use_cache=cache is not None,
            **extra,
        )
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [f"{layer}.{point}" for layer, point in wanted if (layer, point) not in out]
    if missing:
        raise N2GError(f"hook points {', '.join(missing)} never fired: the model skipped them")
    return out


def cache_of(output: Any) -> Any:
    """The KV cache of a model output: `cache` from transformers 5.2x on, `past_key_values`
    before (reading the old name on new versions is a deprecated alias)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def cache_kwarg(model: Any) -> str:
    """The forward argument that takes a KV cache: `cache` on current transformers (passing
    `past_key_values` there warns that it will be removed), `past_key_values` on older ones."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"
