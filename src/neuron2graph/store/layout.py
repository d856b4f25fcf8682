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
"""One manifest per stage: stages/<name>.json (config hash, status, per-unit completion)."""
ALIGN_DIR = "align"
EXPLAIN_DIR = "explain"
"""Explain and score stages: examples, graphs, explanations, scores (docs/explain.md)."""
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


def _unit_json(nid: NeuronId) -> str:
    return f"{nid.layer}_{nid.neuron}.json"


def explain_dir(run_dir: Path) -> Path:
    return Path(run_dir) / EXPLAIN_DIR


def explain_examples_file(run_dir: Path, nid: NeuronId) -> Path:
    """A unit's explain/score contexts (train, test, negatives, hard negatives)."""
    return explain_dir(run_dir) / "examples" / _unit_json(nid)


def explain_graph_file(run_dir: Path, nid: NeuronId) -> Path:
    """The N2G graph the explain stages built on the unit's train contexts."""
    return explain_dir(run_dir) / "graphs" / _unit_json(nid)


def explanations_dir(run_dir: Path, explainer: str | None = None) -> Path:
    """All explainers' folders, or one explainer's (one `L_N.json` per unit)."""
    folder = explain_dir(run_dir) / "explanations"
    return folder / explainer if explainer is not None else folder


def explanation_file(run_dir: Path, explainer: str, nid: NeuronId) -> Path:
    return explanations_dir(run_dir, explainer) / _unit_json(nid)


def scores_dir(run_dir: Path) -> Path:
    return explain_dir(run_dir) / "scores"


def scores_file(run_dir: Path, nid: NeuronId) -> Path:
    """Every method's scores on one unit (JSON, written by `n2g score`)."""
    return scores_dir(run_dir) / _unit_json(nid)


def score_table_file(run_dir: Path) -> Path:
    """The per-layer score table in Markdown (`n2g score`)."""
    return explain_dir(run_dir) / "table.md"


__all__ = [
    "DECODE_DIR",
    "EVAL_DIR",
    "EXPLAIN_DIR",
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
    "explain_dir",
    "explain_examples_file",
    "explain_graph_file",
    "explanation_file",
    "explanations_dir",
    "graph_file",
    "graphs_dir",
    "index_file",
    "layer_file",
    "manifest_file",
    "sample_file",
    "score_table_file",
    "scores_dir",
    "scores_file",
    "stage_manifest_file",
    "stages_dir",
]


def align_dir(run_dir: Path) -> Path:
    """`n2g align RUN_A RUN_B` writes one matching per partner here (`align/<name>.json`)."""
    return run_dir / ALIGN_DIR
