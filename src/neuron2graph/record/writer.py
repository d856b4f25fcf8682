"""Persist a recording: checkpoints of the running state, and the final arrays + index rows.

A checkpoint is a generation of safetensors files (one per layer, one for the sample) plus a
JSON marker naming the generation, written so that a kill never leaves a torn state; resuming
loads it bit-for-bit. The final layout (one file
per layer plus `sample.safetensors`) is what `neuron2graph.store.Run` reads: per-neuron arrays
come first in every shape ([N, K, T], [N, S, T]), so reading one neuron is one contiguous slice
(the sparse sample of sparse units is unit-major CSR for the same reason).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from neuron2graph.errors import N2GError
from neuron2graph.record.histogram import N_BINS, bin_edges, firing_rate
from neuron2graph.record.state import LayerState, SampleState
from neuron2graph.store import db as dbmod
from neuron2graph.store.atomic import atomic_path, write_json_atomic
from neuron2graph.store.run import RECORD_DIR, layer_file, sample_file

CHECKPOINT_DIR = "checkpoint"
MARKER = "progress.json"


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / RECORD_DIR / CHECKPOINT_DIR


def save_checkpoint(
    run_dir: Path, layers: dict[int, LayerState], sample: SampleState, progress: dict[str, Any]
) -> None:
    """Write the state as generation `progress["batches"]`: one file per layer, then the marker.

    Files of a generation are written first (each atomically), then `progress.json` names the
    generation (atomically), then older generations are deleted. A kill at any point leaves the
    marker naming a complete generation. One file per layer keeps the extra memory of a
    checkpoint to one layer's state.
    """
    folder = checkpoint_dir(run_dir)
    gen = int(progress["batches"])
    parts: dict[str, dict[str, torch.Tensor]] = {"sample": sample.tensors("")}
    for layer, state in layers.items():
        parts[f"layer{layer}"] = state.tensors("")
    for name, tensors in parts.items():
        with atomic_path(folder / f"g{gen}-{name}.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    write_json_atomic(folder / MARKER, {**progress, "generation": gen, "parts": sorted(parts)})
    for old in folder.glob("g*-*.safetensors"):
        if not old.name.startswith(f"g{gen}-"):
            old.unlink(missing_ok=True)


def load_checkpoint(
    run_dir: Path, layers: dict[int, LayerState], sample: SampleState
) -> dict[str, Any] | None:
    """Load the state saved by `save_checkpoint` into the given (fresh) states; None if absent."""
    folder = checkpoint_dir(run_dir)
    marker = folder / MARKER
    if not marker.is_file():
        return None
    try:
        progress: dict[str, Any] = json.loads(marker.read_text(encoding="utf-8"))
        gen = int(progress["generation"])
        sample.load(load_file(str(folder / f"g{gen}-sample.safetensors")), "")
        for layer, state in layers.items():
            state.load(load_file(str(folder / f"g{gen}-layer{layer}.safetensors")), "")
    except (OSError, ValueError, KeyError) as exc:
        raise N2GError(
            f"the checkpoint in {folder} is damaged ({str(exc).splitlines()[0][:120]}): "
            "pass --overwrite to start the recording again"
        ) from None
    return progress


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file as save_np

    with atomic_path(path) as tmp:
        save_np({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))


def _sample_arrays(st: LayerState, order: torch.Tensor) -> dict[str, np.ndarray]:
    """Dense `sample_acts [N, S, T]`, or for sparse units the unit-major CSR of its nonzeros
    (`sample_ptr [N+1]`, `sample_row`, `sample_pos`, `sample_val`; see docs/run-format.md)."""
    if st.sparse:
        return {name: value.numpy() for name, value in st.sparse_sample(order).items()}
    return {"sample_acts": st.sample_acts[order].permute(2, 0, 1).numpy()}


def finalize(
    run_dir: Path, layers: dict[int, LayerState], sample: SampleState, n_tokens: int
) -> dict[int, dict[str, np.ndarray]]:
    """Write the final per-layer and sample files and the `neurons` rows; return per-layer stats."""
    order = sample.order()
    _save(sample_file(run_dir), {
        "window": sample.window[order].numpy(),
        "len": sample.length[order].numpy(),
        "tokens": sample.tokens[order].numpy(),
        "key": sample.key[order].numpy(),
        "hist_edges": bin_edges(),
    })
    out: dict[int, dict[str, np.ndarray]] = {}
    conn = dbmod.connect(run_dir)
    try:
        for layer, st in layers.items():
            hist = st.hist.view(st.n, N_BINS).numpy()
            n_pos = st.n_pos().numpy()
            max_act = st.max.numpy()
            rate, err = firing_rate(hist, max_act, n_tokens)
            denom = max(n_tokens, 1)
            stats = {
                "max": max_act.astype(np.float32),
                "min": st.min.numpy().astype(np.float32),
                "mean": (st.sum.numpy() / denom).astype(np.float32),
                "density": (n_pos / denom).astype(np.float32),
                "firing_rate": rate,
                "firing_rate_err": err,
                "n_pos": n_pos,
                "hist": hist,
            }
            arrays = {
                **stats,
                **{name: value.numpy() for name, value in st.sorted_top().items()},
                **_sample_arrays(st, order),
                "sample_max": st.sample_max[order].T.numpy(),
            }
            _save(layer_file(run_dir, layer), arrays)
            n_examples = (st.top_window >= 0).sum(1).numpy()
            rows = [
                (layer, i, float(stats["max"][i]), float(stats["min"][i]),
                 float(stats["mean"][i]), float(stats["density"][i]),
                 float(stats["firing_rate"][i]), int(n_examples[i]))
                for i in range(st.n)
            ]
            dbmod.write_neurons(conn, layer, rows)
            out[layer] = stats
    finally:
        conn.close()
    return out
