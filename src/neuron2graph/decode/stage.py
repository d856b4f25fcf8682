"""The decode stage: every unit of some layers decoded through the LM head into a run directory.

`run(DecodeStageConfig(...), run_dir)` is what `n2g decode --out RUN` calls. A work item is one
whole layer (a block of all its units); the worker writes RUN/decode/layer_LLL.safetensors
atomically and nothing else; the driver derives the `decode` table from those files at the end
(as `n2g reindex` does). Resume and the refusal of another `--top`, `--kinds`, model or dtype come
from RUN/stages/decode.json (earlier, a re-run with another `--top` silently mixed layers decoded
with two settings). Decoding into a folder without a run creates a decode-only run through the
store (`store.run.create_run`), with the tokenizer so that the browser can read it without torch.
"""

from __future__ import annotations

import datetime as _dt
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuron2graph.errors import N2GError
from neuron2graph.ids import NeuronId
from neuron2graph.stages.config import runtime, scope
from neuron2graph.stages.stage import Stage, StageOutcome, WorkItem, discard_outputs, run_stage
from neuron2graph.store import layout

if TYPE_CHECKING:
    from neuron2graph.stages.executor import Executor
    from neuron2graph.store.run import Run

ALL_KINDS = ("promote", "suppress", "read", "read_gate")


@dataclass(frozen=True)
class DecodeStageConfig:
    """Settings of `n2g decode --out` (docs/decode.md)."""

    model: str = "smollm2-135m"
    layers: tuple[int, ...] | None = scope(None)
    """Layers to decode (None: all of the model)."""
    top: int = 10
    """Tokens kept per unit and kind."""
    kinds: tuple[str, ...] = ALL_KINDS
    dtype: str | None = None
    device: str = runtime("auto")
    chunk_size: int = runtime(1024)
    vocab_chunk_size: int = runtime(16384)


def _load(config: DecodeStageConfig) -> Any:
    from neuron2graph.models import load_model

    return load_model(config.model, device=config.device, dtype=config.dtype)


def create_decode_run(run_dir: Path, lm: Any) -> Run:
    """A decode-only run in an empty folder: manifest (through the store) and tokenizer."""
    from neuron2graph import __version__
    from neuron2graph.store.run import create_run
    from neuron2graph.store.tokenizer import save_tokenizer

    if run_dir.exists() and not run_dir.is_dir():
        raise N2GError(f"--out {run_dir} is a file: pass a folder")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise N2GError(f"--out {run_dir} is a non-empty folder that is not a run: pick another")
    run_dir.mkdir(parents=True, exist_ok=True)
    if lm.tokenizer is not None:
        save_tokenizer(lm.tokenizer, run_dir)
    model_type = getattr(getattr(lm.model, "config", None), "model_type", None)
    return create_run(run_dir, {
        "status": "complete",
        "model": {"spec": lm.spec, "family": lm.sites.family, "model_type": model_type,
                  "dtype": str(lm.dtype).removeprefix("torch."), "device": str(lm.device)},
        "weights_hash": lm.weights_hash, "n_layers": lm.n_layers, "n_neurons": lm.n_neurons,
        "units": "neurons", "unit_site": "mlp", "unit_source": "neurons",
        "layers": [], "package_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    })


def check_same_model(run: Run, lm: Any) -> None:
    shape = (run.manifest.get("n_layers"), run.manifest.get("n_neurons"))
    if run.units != "neurons":  # a latent run: units per layer are the coder's, not d_mlp
        shape = (shape[0], lm.n_neurons)
    if shape != (lm.n_layers, lm.n_neurons):
        raise N2GError(
            f"{run.path} holds a run of another model ({shape[0]} layers x {shape[1]} neurons, "
            f"{lm.spec} has {lm.n_layers} x {lm.n_neurons}): pick another --out"
        )
    if run.manifest.get("weights_hash") not in (None, lm.weights_hash):
        warnings.warn(
            f"{run.path} was recorded with weights {run.manifest.get('weights_hash')} and "
            f"{lm.spec} has {lm.weights_hash} (another dtype or checkpoint?)", stacklevel=2,
        )


class DecodeWorker:
    def __init__(self, config: DecodeStageConfig, run_dir: Path) -> None:
        from neuron2graph.decode.weights import FinalNorm, is_gated
        from neuron2graph.store.run import Run

        self.config = config
        self.lm = _load(config)
        from neuron2graph.units import source_for_run

        self.run = Run.open(run_dir, allow_incomplete=True)
        check_same_model(self.run, self.lm)
        self.source = source_for_run(self.run, self.lm)  # neurons, or the run's SAE latents
        self.norm = FinalNorm(self.lm)
        gated = self.run.units == "neurons" and is_gated(self.lm)
        self.kinds = [k for k in config.kinds if k != "read_gate" or gated]

    def process(self, item: WorkItem) -> list[dict[str, Any]]:
        from neuron2graph.decode.core import decode_layer
        from neuron2graph.decode.store import save_layer_file

        c = self.config
        dec = decode_layer(self.lm, item.layer, top=c.top, norm=self.norm, kinds=self.kinds,
                           neuron_chunk=c.chunk_size, vocab_chunk=c.vocab_chunk_size,
                           source=self.source)
        save_layer_file(self.run.path, dec, self.lm)
        rows: list[dict[str, Any]] = [{} for _ in item.units]
        rows[0] = {"final_norm": self.norm.describe()}
        return rows


class DecodeStage(Stage[DecodeStageConfig]):
    name = "decode"

    def open_run(self, config: DecodeStageConfig, run_dir: Path) -> Run:
        from neuron2graph.store.run import Run

        if layout.manifest_file(run_dir).is_file():
            return Run.open(run_dir, allow_incomplete=True)
        return create_decode_run(run_dir, _load(config))

    def select(self, config: DecodeStageConfig, run: Run) -> list[NeuronId]:
        bad = [k for k in config.kinds if k not in ALL_KINDS]
        if not config.kinds or bad:
            raise N2GError(f"bad --kinds {','.join(config.kinds)!r}: use a comma list of "
                           f"{', '.join(ALL_KINDS)}")
        n_layers, n_units = int(run.manifest["n_layers"]), int(run.manifest["n_neurons"])
        latent = run.units != "neurons"  # only the layers the coder(s) were recorded at
        have = run.layers if latent else list(range(n_layers))
        layers = have if config.layers is None else list(config.layers)
        if layers and max(layers) >= n_layers:
            raise N2GError(f"layer {max(layers)} is out of range: the model has layers "
                           f"0..{n_layers - 1}")
        missing = [la for la in layers if la not in have]
        if missing:
            raise N2GError(f"layer {missing[0]} has no units in {run.path} ({run.units} at "
                           f"layers {have}): pick one of those")
        return [NeuronId(la, u) for la in layers for u in range(n_units)]

    def group(self, config: DecodeStageConfig, units: list[NeuronId]) -> list[WorkItem]:
        by_layer: dict[int, list[int]] = {}
        for n in units:
            by_layer.setdefault(n.layer, []).append(n.neuron)
        return [WorkItem(la, tuple(us)) for la, us in by_layer.items()]

    def make_worker(self, config: DecodeStageConfig, run_dir: Path) -> DecodeWorker:
        return DecodeWorker(config, run_dir)

    def clear(self, run: Run) -> None:
        discard_outputs(run, layout.decode_dir(run.path), "DROP TABLE IF EXISTS decode")

    def finish(self, config: DecodeStageConfig, run: Run, outcome: StageOutcome) -> None:
        """Derive the `decode` rows of the layers decoded now from their files."""
        from neuron2graph.decode.table import index_layers

        layers = sorted({n.layer for n in outcome.rows})
        if layers:
            conn = run.db()
            try:
                index_layers(run, conn, layers)
            finally:
                conn.close()
        # run.json notes which layers hold decoded tokens, for readers that do not query.
        norm = next((r["final_norm"] for r in outcome.rows.values() if "final_norm" in r),
                    (run.manifest.get("decode") or {}).get("final_norm", ""))
        done = sorted(la for la, units in (outcome.manifest.done.items()
                                           if outcome.manifest else []) if units)
        run.update_manifest(decode={"layers": done, "top": config.top, "final_norm": norm})


STAGE = DecodeStage()


def run(config: DecodeStageConfig, run_dir: str | Path, *, executor: Executor | None = None,
        overwrite: bool = False, progress: bool = True) -> StageOutcome:
    """Decode the layers `config` selects into `run_dir` (resumable per layer)."""
    return run_stage(STAGE, config, run_dir, executor, overwrite=overwrite, progress=progress)


__all__ = ["STAGE", "DecodeStage", "DecodeStageConfig", "DecodeWorker", "run"]
