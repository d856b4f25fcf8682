"""Where every file of a run directory lives (docs/run-format.md), in one place.

Stages, the search index and the browser build paths through these functions instead of literal
strings, so the layout can change here alone. Pure path arithmetic: no I/O, no imports of ours
beyond the neuron id.
"""

from __future__ import annotations

from pathlib import Path

from neuron2graph.ids import NeuronId

MANIFEST = "run.json"
"""The run manifest: model, weights hash, recorded layers, corpus, package version."""
RECORD_DIR = "record"
GRAPHS_DIR = "graphs"
EVAL_DIR = "eval"
DECODE_DIR = "decode"
STAGES_DIR = "stages"
ALIGN_DIR = "align"
"""One manifest per stage: stages/<name>.json (config hash, status, per-unit completion)."""
INDEX = "index.sqlite"
"""The derived SQLite index: delete it and `n2g reindex` rebuilds it from the files."""
TOKENIZER_DIR = "tokenizer"


def manifest_file(run_dir: Path) -> Path:
    return run_dir / MANIFEST


def index_file(run_dir: Path) -> Path:
    return run_dir / INDEX


def layer_file(run_dir: Path, layer: int) -> Path:
    """A recorded layer: top examples, random-sample activations, statistics (safetensors)."""
    return run_dir / RECORD_DIR / f"layer_{layer}.safetensors"


def sample_file(run_dir: Path) -> Path:
    """The uniform random sample of windows shared by every unit (safetensors)."""
    return run_dir / RECORD_DIR / "sample.safetensors"


def graphs_dir(run_dir: Path) -> Path:
    return run_dir / GRAPHS_DIR


def graph_file(run_dir: Path, nid: NeuronId) -> Path:
    """One unit's N2G graph (versioned JSON, written atomically by `n2g build`)."""
    return run_dir / GRAPHS_DIR / str(nid.layer) / f"{nid.layer}_{nid.neuron}.json"


def eval_dir(run_dir: Path) -> Path:
    return run_dir / EVAL_DIR


def eval_unit_file(run_dir: Path, nid: NeuronId) -> Path:
    """One evaluated unit's result row (JSON), written when the unit is completely scored."""
    return run_dir / EVAL_DIR / "neurons" / f"{nid.layer}_{nid.neuron}.json"


def eval_graph_file(run_dir: Path, method: str, nid: NeuronId) -> Path:
    """A graph the evaluation built on the train half, per graph predictor."""
    name = f"{nid.layer}_{nid.neuron}.json"
    return run_dir / EVAL_DIR / "graphs" / method / str(nid.layer) / name


def decode_dir(run_dir: Path) -> Path:
    return run_dir / DECODE_DIR


def decode_layer_file(run_dir: Path, layer: int) -> Path:
    """One decoded layer: `<kind>_ids`, `<kind>_values` arrays [units, top] (safetensors)."""
    return run_dir / DECODE_DIR / f"layer_{layer:03d}.safetensors"


def stages_dir(run_dir: Path) -> Path:
    return run_dir / STAGES_DIR


def stage_manifest_file(run_dir: Path, stage: str) -> Path:
    return run_dir / STAGES_DIR / f"{stage}.json"


__all__ = [
    "DECODE_DIR",
    "EVAL_DIR",
    "GRAPHS_DIR",
    "INDEX",
    "MANIFEST",
    "RECORD_DIR",
    "STAGES_DIR",
    "TOKENIZER_DIR",
    "decode_dir",
    "decode_layer_file",
    "eval_dir",
    "eval_graph_file",
    "eval_unit_file",
    "graph_file",
    "graphs_dir",
    "index_file",
    "layer_file",
    "manifest_file",
    "sample_file",
    "stage_manifest_file",
    "stages_dir",
]


def align_dir(run_dir: Path) -> Path:
    """`n2g align RUN_A RUN_B` writes one matching per partner here (`align/<name>.json`)."""
    return run_dir / ALIGN_DIR
