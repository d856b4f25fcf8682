"""Write an `Sae` as a SAELens (v6 layout) folder: the exchange format other tools read."""

from __future__ import annotations

import json
from pathlib import Path

from neuron2graph.sae.loading import SAELENS_WEIGHTS
from neuron2graph.sae.model import Sae

_TL = {"resid_pre": "hook_resid_pre", "resid_post": "hook_resid_post", "mlp_out": "hook_mlp_out",
       "mlp_post": "mlp.hook_post", "mlp_in": "ln2.hook_normalized"}


def tl_hook_name(layer: int, site: str) -> str:
    return f"blocks.{layer}.{_TL[site]}"


def save_saelens(sae: Sae, folder: str | Path) -> Path:
    """`cfg.json` + `sae_weights.safetensors`; transcoders get `hook_name_out` and `d_out`."""
    from safetensors.torch import save_file

    info = sae.info
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arch = {"relu": "standard"}.get(info.architecture, info.architecture)
    if info.transcoder:
        arch = {"standard": "transcoder", "jumprelu": "jumprelu_transcoder"}.get(arch, arch)
    meta = {"model_name": info.model_name, "hook_name": tl_hook_name(info.layer, info.reads.site)}
    cfg: dict[str, object] = {
        "architecture": arch, "d_in": info.d_in, "d_sae": info.d_sae, "dtype": "float32",
        "apply_b_dec_to_input": info.apply_b_dec_to_input, "normalize_activations": "none",
        "meta": meta,
    }
    if info.k is not None:
        cfg["k"] = info.k
    if info.transcoder:
        cfg["d_out"] = info.d_out
        meta["hook_name_out"] = tl_hook_name(info.writes.layer, info.writes.site)
    tensors = {"W_enc": sae.W_enc, "b_enc": sae.b_enc, "W_dec": sae.W_dec, "b_dec": sae.b_dec}
    if info.architecture == "jumprelu":
        tensors["threshold"] = sae.threshold
    if sae.has_skip:
        tensors["W_skip"] = sae.W_skip
    (folder / "cfg.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    # Cloned: safetensors refuses tensors that share memory (e.g. a tied W_enc = W_dec.T).
    owned = {k: v.detach().clone().contiguous() for k, v in tensors.items()}
    save_file(owned, str(folder / SAELENS_WEIGHTS))
    return folder
