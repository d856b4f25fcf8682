"""Decoded tokens in a run: `RUN/decode/layer_LLL.safetensors`, one file per layer.

The safetensors file holds the full arrays (`<kind>_ids`, `<kind>_values`, `[n_neurons, top]`)
for programs; the `decode` table (token pieces, for the browser and queries) is derived from the
files (`decode.table.index_layers`). Files are written atomically, so a killed run keeps every
finished layer; the decode stage (decode/stage.py) resumes from RUN/stages/decode.json.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from neuron2graph.decode.core import LayerDecode
from neuron2graph.decode.topk import TopK
from neuron2graph.errors import N2GError
from neuron2graph.models.loading import LoadedModel
from neuron2graph.store.atomic import write_bytes_atomic


def layer_path(run_dir: str | Path, layer: int) -> Path:
    from neuron2graph.store import layout

    return layout.decode_layer_file(Path(run_dir), layer)


def note_in_manifest(run_dir: str | Path, layers: list[int], top: int, final_norm: str) -> None:
    """Record in run.json which layers were decoded, so that readers know without a query."""
    from neuron2graph.store.run import Run

    run = Run.open(run_dir, allow_incomplete=True)
    old = run.manifest.get("decode") or {}
    done = sorted(set(old.get("layers", [])) | set(layers))
    run.update_manifest(decode={"layers": done, "top": top, "final_norm": final_norm})


def save_layer_file(run_dir: str | Path, dec: LayerDecode, lm: LoadedModel) -> Path:
    """Write one layer's arrays atomically (the `decode` table is derived from this file by
    the driver, `decode.table.index_layers`); returns the path."""
    from safetensors.torch import save

    tensors = {}
    for kind, tk in dec.kinds.items():
        tensors[f"{kind}_ids"] = tk.ids.contiguous()
        tensors[f"{kind}_values"] = tk.values.contiguous()
    meta = {"layer": str(dec.layer), "top": str(dec.top), "model": lm.spec,
            "weights_hash": lm.weights_hash}
    path = layer_path(run_dir, dec.layer)
    write_bytes_atomic(path, save(tensors, metadata=meta))
    return path


def save_layer(
    run_dir: str | Path, dec: LayerDecode, lm: LoadedModel, conn: sqlite3.Connection
) -> Path:
    """Write one layer's file, then derive its table rows from it (library convenience)."""
    from neuron2graph.decode.table import index_layers
    from neuron2graph.store.run import Run

    path = save_layer_file(run_dir, dec, lm)
    index_layers(Run.open(run_dir, allow_incomplete=True), conn, [dec.layer])
    return path


def load_layer(run_dir: str | Path, layer: int) -> LayerDecode:
    """Read back one decoded layer from its safetensors file."""
    from safetensors import safe_open

    path = layer_path(run_dir, layer)
    if not path.is_file():
        raise N2GError(f"layer {layer} was not decoded in {run_dir}: run `n2g decode --out`")
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
        names = list(fh.keys())
        kinds = {
            name[: -len("_ids")]: TopK(fh.get_tensor(name), fh.get_tensor(name[:-4] + "_values"))
            for name in names if name.endswith("_ids")
        }
    return LayerDecode(layer=layer, top=int(meta.get("top", 0)), kinds=kinds)
