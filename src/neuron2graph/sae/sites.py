"""Read (and write) the activations an SAE sees, on the Hugging Face modules of any supported model.

| site       | module                        | taken from            |
|------------|-------------------------------|-----------------------|
| resid_pre  | decoder layer L               | its input             |
| resid_post | decoder layer L               | its output            |
| mlp_in     | layer L's MLP (OPT: fc1)      | its input (post-norm) |
| mlp_out    | layer L's MLP (OPT: fc2)      | its output            |
| mlp_post   | the MLP output projection     | its input (neurons)   |

The forward stops as soon as the deepest wanted site was read, as for neurons.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from neuron2graph.errors import N2GError
from neuron2graph.models.loading import LoadedModel
from neuron2graph.sae.hooks import HookPoint

_ORDER = {"resid_pre": 0, "mlp_in": 1, "mlp_post": 2, "mlp_out": 3, "resid_post": 4}


class _Stop(Exception):
    pass


def site_module(lm: LoadedModel, point: HookPoint) -> tuple[nn.Module, bool]:
    """(module, True when the site is the module's input; False when its output)."""
    lm.check_neuron(point.layer)
    layer = lm.layer_modules[point.layer]
    if point.site in ("resid_pre", "resid_post"):
        return layer, point.site == "resid_pre"
    if point.site == "mlp_post":
        return lm.sites.mlp_out(layer), True
    mlp = getattr(layer, "mlp", None)
    if isinstance(mlp, nn.Module):
        return mlp, point.site == "mlp_in"
    if hasattr(layer, "fc1") and hasattr(layer, "fc2"):  # OPT: the MLP is fc1 -> act -> fc2
        fc1: nn.Module = layer.fc1  # type: ignore[assignment]
        fc2: nn.Module = layer.fc2  # type: ignore[assignment]
        return (fc1, True) if point.site == "mlp_in" else (fc2, False)
    raise N2GError(f"cannot find the MLP of {lm.spec} layer {point.layer} for site {point.site}")


def _first(x: Any) -> Tensor:
    return x[0] if isinstance(x, tuple) else x  # type: ignore[no-any-return]


@torch.inference_mode()
def site_activations(
    lm: LoadedModel,
    input_ids: Int[Tensor, "batch pos"],
    points: Sequence[HookPoint],
    *,
    attention_mask: Int[Tensor, "batch pos"] | None = None,
    transform: dict[HookPoint, Callable[[Tensor], Tensor]] | None = None,
) -> dict[HookPoint, Float[Tensor, "batch pos d"]]:
    """`{point: activations}` (after `transform[point]` when given), stopping the forward early."""
    wanted = sorted(set(points), key=lambda p: (p.layer, _ORDER[p.site]))
    if not wanted:
        return {}
    last = wanted[-1]
    out: dict[HookPoint, Tensor] = {}
    handles = []

    def grab(point: HookPoint, acts: Tensor) -> None:
        if acts.dim() == 2:  # OPT flattens (batch, pos) around its MLP
            acts = acts.reshape(*input_ids.shape, acts.shape[-1])
        if transform and point in transform:
            acts = transform[point](acts)
        out[point] = acts
        if point == last or len(out) == len(wanted):
            raise _Stop

    for point in wanted:
        module, is_input = site_module(lm, point)
        if is_input:
            def pre(_m: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                    p: HookPoint = point) -> None:
                grab(p, args[0] if args else kwargs["hidden_states"])
            handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        else:
            def post(_m: Any, _a: Any, output: Any, p: HookPoint = point) -> None:
                grab(p, _first(output))
            handles.append(module.register_forward_hook(post))
    try:
        lm.model(input_ids=input_ids.to(lm.device),
                 attention_mask=None if attention_mask is None else attention_mask.to(lm.device),
                 use_cache=False)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    return out


def site_width(lm: LoadedModel, point: HookPoint) -> int:
    """Width of the model at `point` (one tiny forward; cheap and architecture-agnostic)."""
    ids = torch.zeros((1, 2), dtype=torch.long)
    return int(site_activations(lm, ids, [point])[point].shape[-1])


@contextmanager
def added_at(lm: LoadedModel, point: HookPoint,
             delta: Float[Tensor, " d"]) -> Iterator[None]:
    """Within the block, `delta` is added to the activations at `point` at every position.

    Steering a latent: `added_at(lm, sae.info.writes, alpha * sae.W_dec[i])`.
    """
    module, is_input = site_module(lm, point)

    def pre(_m: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if args:
            return (args[0] + delta.to(args[0]), *args[1:]), kwargs
        kwargs = dict(kwargs, hidden_states=kwargs["hidden_states"] + delta)
        return args, kwargs

    def post(_m: Any, _a: Any, output: Any) -> Any:
        if isinstance(output, tuple):
            return (output[0] + delta.to(output[0]), *output[1:])
        return output + delta.to(output)

    handle = (module.register_forward_pre_hook(pre, with_kwargs=True) if is_input
              else module.register_forward_hook(post))
    try:
        yield
    finally:
        handle.remove()
