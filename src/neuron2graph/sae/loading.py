"""Load SAEs and transcoders (SAELens folders, sparsify checkpoints); check them against a model.

Formats (detected from the files, never from the folder name):

- **SAELens**: `cfg.json` + `sae_weights.safetensors` with `W_enc [d_in, d_sae]`, `b_enc`,
  `W_dec [d_sae, d_out]`, `b_dec`, optional `threshold` (or `log_threshold`), `W_skip`. The config
  is either v6 (`architecture`, `meta.hook_name`, `meta.model_name`) or older (top-level
  `hook_name`, `model_name`, `activation_fn_str`/`activation_fn_kwargs.k`). Transcoders carry
  `hook_name_out` and `d_out`.
- **sparsify**: one folder per hookpoint named by the module path (`layers.5.mlp`) holding
  `cfg.json` (`d_in`, `k`, `activation`, `transcode`, ...) + `sae.safetensors` with
  `encoder.weight [d_sae, d_in]`, `encoder.bias`, `W_dec [d_sae, d_in]`, `b_dec`, optional `W_skip`.
  A training run folder holds several of these; pass it and every hookpoint in it is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from neuron2graph.errors import N2GError
from neuron2graph.sae.hooks import HookPoint, parse_sparsify_hookpoint, parse_tl_hook
from neuron2graph.sae.model import Architecture, Sae, SaeInfo

SAELENS_WEIGHTS = "sae_weights.safetensors"
SPARSIFY_WEIGHTS = "sae.safetensors"
N2G_META = "n2g_sae.json"
"""Written by `n2g train-sae` beside a checkpoint: the model spec it was trained on."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise N2GError(f"cannot read {path} ({exc}): it should be the SAE's JSON config"
                       ) from None
    if not isinstance(data, dict):
        raise N2GError(f"{path} is not a JSON object: it should be the SAE's config")
    return data


def _tensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise N2GError(f"cannot read {path} ({str(exc)[:120]}): the weights file is damaged"
                       ) from None


def _need(tensors: dict[str, Any], name: str, path: Path) -> Any:
    if name not in tensors:
        raise N2GError(f"{path} has no tensor {name!r} (has {', '.join(sorted(tensors))}): "
                       "not a checkpoint of the format its cfg.json claims")
    return tensors[name]


def _model_name(folder: Path, cfg_name: str | None) -> str | None:
    meta = folder / N2G_META
    if meta.is_file():
        return str(_read_json(meta).get("model") or cfg_name or "") or None
    return cfg_name


def load_saelens(folder: Path) -> Sae:
    cfg = _read_json(folder / "cfg.json")
    meta = cfg.get("meta") or cfg.get("metadata") or {}
    hook_name = meta.get("hook_name") or cfg.get("hook_name")
    if not hook_name:
        raise N2GError(f"{folder / 'cfg.json'} names no hook_name: cannot tell where the SAE reads")
    reads = parse_tl_hook(str(hook_name))
    arch_raw = str(cfg.get("architecture") or "standard")
    fn = str(cfg.get("activation_fn_str") or "relu")
    k = cfg.get("k") or (cfg.get("activation_fn_kwargs") or {}).get("k")
    transcoder = arch_raw in ("transcoder", "skip_transcoder", "jumprelu_transcoder")
    arch: Architecture
    if arch_raw in ("jumprelu", "jumprelu_transcoder"):
        arch = "jumprelu"
    elif arch_raw == "topk" or fn == "topk":
        arch = "topk"
    elif arch_raw in ("standard", "transcoder", "skip_transcoder") and fn == "relu":
        arch = "relu"
    else:
        raise N2GError(f"{folder}: SAELens architecture {arch_raw!r} (activation {fn!r}) is not "
                       "supported: neuron2graph loads standard, topk, jumprelu and transcoders")
    norm = cfg.get("normalize_activations") or "none"
    if norm != "none":
        raise N2GError(f"{folder}: normalize_activations={norm!r} is not supported: fold the "
                       "scaling into the weights (SAELens fold_activation_norm_scaling_factor)")
    writes = reads
    if transcoder:
        out_name = meta.get("hook_name_out") or cfg.get("hook_name_out")
        if not out_name:
            raise N2GError(f"{folder}: transcoder config has no hook_name_out")
        writes = parse_tl_hook(str(out_name))
    t = _tensors(folder / SAELENS_WEIGHTS)
    path = folder / SAELENS_WEIGHTS
    W_enc = _need(t, "W_enc", path)
    threshold = t.get("threshold")
    if threshold is None and "log_threshold" in t:
        threshold = t["log_threshold"].exp()
    d_in = int(cfg.get("d_in") or W_enc.shape[0])
    d_sae = int(cfg.get("d_sae") or W_enc.shape[1])
    info = SaeInfo(
        d_in=d_in, d_sae=d_sae, d_out=int(cfg.get("d_out") or d_in) if transcoder else d_in,
        architecture=arch, reads=reads, writes=writes, k=int(k) if k else None,
        apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)) and not transcoder,
        model_name=_model_name(folder, meta.get("model_name") or cfg.get("model_name")),
        hook_name=str(hook_name), format="saelens", path=str(folder),
    )
    return Sae(info, W_enc, _need(t, "b_enc", path), _need(t, "W_dec", path),
               _need(t, "b_dec", path), threshold=threshold, W_skip=t.get("W_skip"))


def load_sparsify(folder: Path) -> Sae:
    cfg = _read_json(folder / "cfg.json")
    transcode = bool(cfg.get("transcode", False))
    reads, writes = parse_sparsify_hookpoint(folder.name, transcode=transcode)
    activation = cfg.get("activation", "topk")
    if activation != "topk":
        raise N2GError(f"{folder}: sparsify activation {activation!r} is not supported: "
                       "neuron2graph loads TopK sparse coders")
    path = folder / SPARSIFY_WEIGHTS
    t = _tensors(path)
    enc = _need(t, "encoder.weight", path)
    if "W_dec" not in t:
        raise N2GError(f"{path} has no decoder (W_dec): save the coder with its decoder")
    d_in = int(cfg.get("d_in") or enc.shape[1])
    info = SaeInfo(
        d_in=d_in, d_sae=int(enc.shape[0]), d_out=int(t["W_dec"].shape[1]), architecture="topk",
        reads=reads, writes=writes, k=int(cfg.get("k", 32)),
        apply_b_dec_to_input=not transcode, model_name=_model_name(folder, None),
        hook_name=folder.name, format="sparsify", path=str(folder),
    )
    return Sae(info, enc.T, _need(t, "encoder.bias", path), t["W_dec"], _need(t, "b_dec", path),
               W_skip=t.get("W_skip"))


def _load_one(folder: Path) -> Sae | None:
    if not (folder / "cfg.json").is_file():
        return None
    if (folder / SAELENS_WEIGHTS).is_file():
        return load_saelens(folder)
    if (folder / SPARSIFY_WEIGHTS).is_file():
        return load_sparsify(folder)
    raise N2GError(f"{folder} has cfg.json but neither {SAELENS_WEIGHTS} (SAELens) nor "
                   f"{SPARSIFY_WEIGHTS} (sparsify)")


def load_saes(path: str | Path) -> list[Sae]:
    """Every coder at `path`: one folder, or a folder of hookpoint folders; sorted by layer."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise N2GError(f"no SAE folder {str(path)!r}: pass a SAELens folder (cfg.json + "
                       f"{SAELENS_WEIGHTS}) or a sparsify checkpoint folder")
    one = _load_one(folder)
    if one is not None:
        return [one]
    found = [s for sub in sorted(folder.iterdir()) if sub.is_dir()
             if (s := _load_one(sub)) is not None]
    if not found:
        raise N2GError(f"{folder} holds no SAE: expected cfg.json + {SAELENS_WEIGHTS} or "
                       f"{SPARSIFY_WEIGHTS}, here or in one folder per hookpoint")
    by_layer: dict[int, Sae] = {}
    for sae in found:
        if sae.info.layer in by_layer:
            raise N2GError(f"{folder} holds two coders for layer {sae.info.layer} "
                           f"({by_layer[sae.info.layer].info.hook_name}, {sae.info.hook_name}): "
                           "pass the one you want by its folder")
        by_layer[sae.info.layer] = sae
    return [by_layer[k] for k in sorted(by_layer)]


def _norm_name(name: str) -> str:
    base = name.strip().rstrip("/").split("/")[-1].lower()
    return {"gpt2-small": "gpt2"}.get(base, base)


def check_against_model(sae: Sae, lm: Any, site_width: int) -> None:
    """One-line error when `sae` cannot belong to `lm`: layer, width, or named model differ.

    `site_width` is the model's width at the site the SAE reads (d_model or d_mlp).
    """
    info = sae.info
    where = f"SAE {info.path or info.hook_name}"
    if not 0 <= info.layer < lm.n_layers:
        raise N2GError(f"{where} reads layer {info.layer}, but {lm.spec} has layers "
                       f"0..{lm.n_layers - 1}: it was made for another model")
    if info.d_in != site_width:
        raise N2GError(f"{where} has d_in={info.d_in}, but {lm.spec} is {site_width} wide at "
                       f"{info.reads.site} of layer {info.layer}: it was made for another model "
                       "or another site")
    if info.model_name:
        ours = {_norm_name(lm.spec),
                _norm_name(str(getattr(getattr(lm.model, "config", None), "_name_or_path", "")))}
        theirs = _norm_name(info.model_name)
        if theirs and not any(o and (o in theirs or theirs in o) for o in ours):
            raise N2GError(f"{where} was made for model {info.model_name!r}, not {lm.spec!r}: "
                           "load it with the model it was trained on")


def hook_point_of(sae: Sae) -> HookPoint:
    return sae.info.reads
