"""Load a causal LM and its tokenizer from a hub name, a local folder, a .gguf file or an alias."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from neuron2graph.dtypes import SHORT_TO_TORCH
from neuron2graph.errors import N2GError
from neuron2graph.models.default import DEFAULT_ALIAS, converted_default_dir
from neuron2graph.models.sites import ArchitectureSites, sites_for

DeviceSpec = Literal["auto", "cpu", "cuda"] | str
DTYPES = {short: getattr(torch, name) for short, name in SHORT_TO_TORCH.items()}
ALIASES = {DEFAULT_ALIAS: converted_default_dir}


@dataclass
class LoadedModel:
    """A causal LM ready for neuron reading: the module, its tokenizer and where its neurons are."""

    model: nn.Module
    tokenizer: Any
    spec: str
    sites: ArchitectureSites
    weights_hash: str
    device: torch.device
    dtype: torch.dtype
    layer_modules: list[nn.Module] = field(default_factory=list)

    @property
    def n_layers(self) -> int:
        return len(self.layer_modules)

    @property
    def n_neurons(self) -> int:
        """Neurons per layer: the input width of the MLP output projection."""
        out = self.sites.mlp_out(self.layer_modules[0])
        weight: Any = out.weight
        # nn.Linear stores [out, in]; GPT-2's Conv1D stores [in, out].
        return int(weight.shape[0] if type(out).__name__ == "Conv1D" else weight.shape[1])

    def check_neuron(self, layer: int, neuron: int | None = None) -> None:
        if not 0 <= layer < self.n_layers:
            raise N2GError(
                f"layer {layer} is out of range: {self.spec} has layers 0..{self.n_layers - 1}"
            )
        if neuron is not None and not 0 <= neuron < self.n_neurons:
            raise N2GError(
                f"neuron {layer}:{neuron} is out of range: layers of {self.spec} have neurons "
                f"0..{self.n_neurons - 1}"
            )


def resolve_device(device: DeviceSpec) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise N2GError("--device cuda was asked for but no GPU is visible: use --device cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise N2GError(f"unknown device {device!r}: use auto, cpu or cuda") from None


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise N2GError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)} or auto")
    return DTYPES[dtype]


def weights_hash(model: nn.Module) -> str:
    """A cheap, stable fingerprint of the weights: shapes plus a strided sample of values."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // 64)
        sample = flat[::step][:64].to(torch.float32).cpu().numpy().tobytes()
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(sample)
    return h.hexdigest()[:16]


def _from_pretrained(path: str, gguf_file: str | None, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
    return model, tokenizer


def load_model(
    spec: str = DEFAULT_ALIAS,
    *,
    device: DeviceSpec = "auto",
    dtype: str | None = None,
) -> LoadedModel:
    """Load `spec`: the alias `smollm2-135m`, a local folder, a `.gguf` file or a hub name."""
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    path = Path(os.path.expanduser(spec))
    try:
        if spec in ALIASES:
            model, tokenizer = _from_pretrained(str(ALIASES[spec]()), None, torch_dtype)
        elif path.suffix == ".gguf":
            if not path.is_file():
                raise N2GError(f"no such GGUF file {spec!r}: check the path")
            model, tokenizer = _from_pretrained(str(path.parent), path.name, torch_dtype)
        elif path.is_dir():
            model, tokenizer = _from_pretrained(str(path), None, torch_dtype)
        elif spec.startswith((".", "/", "~")) or path.suffix:
            raise N2GError(f"no such model folder or file {spec!r}: check the path")
        else:
            model, tokenizer = _from_pretrained(spec, None, torch_dtype)
    except N2GError:
        raise
    except OSError as exc:
        raise N2GError(
            f"cannot load model {spec!r} ({str(exc).splitlines()[0][:160]}): pass a local folder, "
            f"a .gguf file, or the offline default {DEFAULT_ALIAS!r}"
        ) from None
    return wrap_model(model, tokenizer, spec=spec, device=dev)


def wrap_model(
    model: nn.Module,
    tokenizer: Any,
    *,
    spec: str = "custom",
    device: DeviceSpec | torch.device = "cpu",
) -> LoadedModel:
    """Wrap an already-built model (e.g. a tiny random-init test model) for neuron reading."""
    sites = sites_for(model)
    dev = resolve_device(device) if isinstance(device, str) else device
    model = model.to(dev).eval()
    if getattr(tokenizer, "pad_token_id", None) is None and tokenizer is not None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    dtype = next(model.parameters()).dtype
    layers = list(sites.layers(model))
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        spec=spec,
        sites=sites,
        weights_hash=weights_hash(model),
        device=dev,
        dtype=dtype,
        layer_modules=layers,
    )
