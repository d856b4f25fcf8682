"""Write decoded tokens into a run: `RUN/decode/layer_LLL.safetensors` plus the `decode` table.

The safetensors file holds the full arrays (`<kind>_ids`, `<kind>_values`, `[n_neurons, top]`)
for programs; the SQLite table holds the same with token pieces, for the browser and queries.
Both are replaced per layer atomically, so a killed run keeps every finished layer.
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
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
    """The run's index (WAL). Uses `store.run.Run` when the folder is already a run; a fresh
    folder gets a minimal manifest so that later stages recognise it as a run."""
    run_dir = Path(run_dir)
    manifest = run_dir / "run.json"
    if manifest.is_file():
        try:
            from neuron2graph.store.run import Run
        except ImportError:
            pass
        else:
            return Run.open(run_dir).db()  # type: ignore[no-any-return]
        data = json.loads(manifest.read_text())
        if data.get("format") != "neuron2graph/run":
            raise N2GError(f"{run_dir} is not a neuron2graph run (foreign run.json): pick --out")
        if data.get("n_layers") not in (None, lm.n_layers):
            raise N2GError(f"run {run_dir} was made with another model ({data.get('model')}): "
                           "pick another --out")
    else:
        from neuron2graph import __version__

        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(manifest, {
            "format": "neuron2graph/run", "format_version": 1, "model": lm.spec,
            "weights_hash": lm.weights_hash, "n_layers": lm.n_layers, "n_neurons": lm.n_neurons,
            "package_version": __version__,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        })
    try:
        from neuron2graph.store.db import connect
    except ImportError:
        conn = sqlite3.connect(run_dir / "index.sqlite", timeout=30.0, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn
    return connect(run_dir)


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
