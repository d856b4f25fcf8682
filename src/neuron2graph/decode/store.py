"""Write decoded tokens into a run: `RUN/decode/layer_LLL.safetensors` plus the `decode` table.

The safetensors file holds the full arrays (`<kind>_ids`, `<kind>_values`, `[n_neurons, top]`)
for programs; the SQLite table holds the same with token pieces, for the browser and queries.
Both are replaced per layer atomically, so a killed run keeps every finished layer.
"""

from __future__ import annotations

import datetime as _dt
import sqlite3
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from neuron2graph.decode.core import LayerDecode
from neuron2graph.decode.table import DecodeRow, write_layer_rows
from neuron2graph.decode.topk import TopK
from neuron2graph.errors import N2GError
from neuron2graph.models.loading import LoadedModel
from neuron2graph.store.atomic import write_bytes_atomic, write_json_atomic
from neuron2graph.tokens import token_pieces


def layer_path(run_dir: str | Path, layer: int) -> Path:
    return Path(run_dir) / "decode" / f"layer_{layer:03d}.safetensors"


def open_run_db(run_dir: str | Path, lm: LoadedModel) -> sqlite3.Connection:
    """The run's index (WAL), opened through `store.run.Run`.

    Decode into a recorded run (after `n2g record`) so that the browser shows decoded tokens on
    its neuron pages, or into a fresh folder, which becomes a decode-only run: a manifest with
    no recorded layers, plus the tokenizer so that the browser can read it without torch.
    """
    from neuron2graph.store.run import Run

    run_dir = Path(run_dir).expanduser()
    if (run_dir / "run.json").is_file():
        run = Run.open(run_dir, allow_incomplete=True)
        shape = (run.manifest.get("n_layers"), run.manifest.get("n_neurons"))
        if shape != (lm.n_layers, lm.n_neurons):
            raise N2GError(
                f"{run_dir} holds a run of another model ({shape[0]} layers x {shape[1]} neurons, "
                f"{lm.spec} has {lm.n_layers} x {lm.n_neurons}): pick another --out"
            )
        if run.manifest.get("weights_hash") not in (None, lm.weights_hash):
            warnings.warn(
                f"{run_dir} was recorded with weights {run.manifest.get('weights_hash')} and "
                f"{lm.spec} has {lm.weights_hash} (another dtype or checkpoint?)", stacklevel=2,
            )
        return run.db()
    if run_dir.exists() and not run_dir.is_dir():
        raise N2GError(f"--out {run_dir} is a file: pass a folder")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise N2GError(f"--out {run_dir} is a non-empty folder that is not a run: pick another")
    from neuron2graph import __version__
    from neuron2graph.store.tokenizer import save_tokenizer

    run_dir.mkdir(parents=True, exist_ok=True)
    if lm.tokenizer is not None:
        save_tokenizer(lm.tokenizer, run_dir)
    model_type = getattr(getattr(lm.model, "config", None), "model_type", None)
    write_json_atomic(run_dir / "run.json", {
        "format": "neuron2graph/run", "format_version": 1, "status": "complete",
        "model": {"spec": lm.spec, "family": lm.sites.family, "model_type": model_type,
                  "dtype": str(lm.dtype).removeprefix("torch."), "device": str(lm.device)},
        "weights_hash": lm.weights_hash, "n_layers": lm.n_layers, "n_neurons": lm.n_neurons,
        "units": "neurons", "unit_site": "mlp", "unit_source": "neurons", "layers": [],
        "package_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    })
    return Run.open(run_dir).db()


def note_in_manifest(run_dir: str | Path, layers: list[int], top: int, final_norm: str) -> None:
    """Record in run.json which layers were decoded, so that readers know without a query."""
    from neuron2graph.store.run import Run

    run = Run.open(run_dir, allow_incomplete=True)
    old = run.manifest.get("decode") or {}
    done = sorted(set(old.get("layers", [])) | set(layers))
    run.update_manifest(decode={"layers": done, "top": top, "final_norm": final_norm})


def _rows(layer: int, dec: LayerDecode, tokenizer: Any) -> Iterator[DecodeRow]:
    pieces: dict[int, str] = {}
    for kind, tk in dec.kinds.items():
        ids, vals = tk.ids.tolist(), tk.values.tolist()
        missing = sorted({t for row in ids for t in row} - pieces.keys())
        if tokenizer is not None:
            pieces.update(zip(missing, token_pieces(tokenizer, missing), strict=True))
        for neuron, (row_ids, row_vals) in enumerate(zip(ids, vals, strict=True)):
            for rank, (tid, val) in enumerate(zip(row_ids, row_vals, strict=True)):
                yield (layer, neuron, kind, rank, tid, pieces.get(tid, str(tid)), val)


def save_layer(
    run_dir: str | Path, dec: LayerDecode, lm: LoadedModel, conn: sqlite3.Connection
) -> Path:
    """Write one layer's arrays and table rows; returns the safetensors path."""
    from safetensors.torch import save

    tensors = {}
    for kind, tk in dec.kinds.items():
        tensors[f"{kind}_ids"] = tk.ids.contiguous()
        tensors[f"{kind}_values"] = tk.values.contiguous()
    meta = {"layer": str(dec.layer), "top": str(dec.top), "model": lm.spec,
            "weights_hash": lm.weights_hash}
    path = layer_path(run_dir, dec.layer)
    write_bytes_atomic(path, save(tensors, metadata=meta))
    write_layer_rows(conn, dec.layer, _rows(dec.layer, dec, lm.tokenizer))
    return path


def layer_done(
    run_dir: str | Path, layer: int, lm: LoadedModel, top: int, kinds: list[str]
) -> bool:
    """Whether `layer` is already decoded in the run with the same model, top and kinds, so a
    re-run (after an interruption) can skip it."""
    from safetensors import safe_open

    path = layer_path(run_dir, layer)
    if not path.is_file():
        return False
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            names = list(fh.keys())
        have = {name[: -len("_ids")] for name in names if name.endswith("_ids")}
    except Exception:  # a foreign or damaged file: decode the layer again
        return False
    from neuron2graph.decode.weights import is_gated

    wanted = {k for k in kinds if k != "read_gate" or is_gated(lm)}
    return (
        meta.get("top") == str(top) and meta.get("weights_hash") == lm.weights_hash
        and wanted <= have
    )


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
