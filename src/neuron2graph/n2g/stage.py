"""The build stage: N2G graphs for a run's units, one file each (RUN/graphs/L/L_N.json).

`run(BuildStageConfig(...), run_dir)` is what `n2g build` calls. Selection (explicit ids, or a
seeded sample of alive units of a layer) happens on the driver; each work item is a block of
`batch_neurons` units of one layer, built together in shared model batches by a worker that
holds the loaded model. Resume and the refusal of changed settings come from the stage manifest
(RUN/stages/build.json): `n2g build` with another `--mask` or `--augmenter` on a run that
holds graphs refuses, instead of silently keeping graphs of the old settings next to new ones.
Torch is imported only inside the worker.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuron2graph.dtypes import short_name
from neuron2graph.errors import N2GError
from neuron2graph.ids import NeuronId
from neuron2graph.stages.config import result_fields, runtime, scope
from neuron2graph.stages.stage import Stage, StageOutcome, WorkItem, discard_outputs, run_stage
from neuron2graph.store import layout

if TYPE_CHECKING:
    from neuron2graph.stages.executor import Executor
    from neuron2graph.store.run import Run



@dataclass(frozen=True)
class BuildStageConfig:
    """Settings of `n2g build` (docs/n2g.md)."""

    neurons: tuple[NeuronId, ...] | None = scope(None)
    """Build exactly these units (or use `layer` and `sample`)."""
    layer: int | None = scope(None)
    """Build alive units of this layer."""
    sample: int | None = scope(None)
    """With `layer`: this many random alive units (None: all)."""
    seed: int = scope(0)
    """Seed of the `sample` draw."""
    top_k: int | None = None
    """Top examples per unit (None: all recorded)."""
    augmenter: str | None = "causal"
    """`causal`, a fill-mask model name/path, or None (no augmentation)."""
    mask: str = "pad"
    """Saliency mask: pad, unk, delete, mean_embedding or id:N."""
    dtype: str | None = None
    """Model dtype (None: the dtype the run was recorded in); hashed after resolving."""
    device: str = runtime("auto")
    batch_neurons: int = runtime(8)
    """Units of one layer built together in shared batches (speed only)."""
    method: str = "paper"
    """`paper` (today's build) or `improved`: built on the top `ImproveConfig.max_examples`
    windows (unless `top_k`), then calibrated over every recorded window of the unit (its top
    windows and the run's random sample); predicts with `search="calibrated"`."""

    def n2g_config(self) -> Any:
        from neuron2graph.n2g.pipeline import ImproveConfig, N2GConfig
        from neuron2graph.n2g.saliency import SaliencyConfig

        if self.method not in METHODS:
            raise N2GError(f"unknown method {self.method!r}: use paper or improved")
        return N2GConfig(augmenter=self.augmenter, saliency=SaliencyConfig(mask=self.mask),
                         improve=ImproveConfig() if self.method == "improved" else None)


METHODS = ("paper", "improved")


def recorded_dtype(run: Run) -> str | None:
    """The run's recording dtype as fp32/fp16/bf16 (None when the manifest does not say)."""
    model = run.manifest.get("model")
    recorded = (model.get("dtype") if isinstance(model, dict) else None) or (
        run.manifest.get("identity") or {}).get("dtype")
    return short_name(recorded)


def pick_neurons(run: Run, config: BuildStageConfig) -> list[NeuronId]:
    """Explicit ids (checked against the run), or a seeded sample of a layer's alive units."""
    if config.neurons:
        if config.layer is not None or config.sample is not None:
            raise N2GError("pass either --neurons or --layer/--sample, not both")
        return [run.check(n) for n in config.neurons]
    layer = config.layer
    if layer is None:
        raise N2GError("no neurons chosen: pass --neurons 3:41,3:100 or --layer 3 --sample 20")
    if layer not in run.layers:
        raise N2GError(f"layer {layer} was not recorded in this run: recorded layers are "
                       f"{run.layers}")
    maxima = run.stats(layer)["max"]
    alive = [i for i in range(len(maxima)) if float(maxima[i]) > 0]
    if not alive:
        raise N2GError(f"no neuron of layer {layer} ever fires in this run: pick another layer")
    count = len(alive) if config.sample is None else min(config.sample, len(alive))
    chosen = sorted(random.Random(config.seed).sample(alive, count))
    return [NeuronId(layer, n) for n in chosen]


def blocks(nids: list[NeuronId], size: int) -> list[WorkItem]:
    """Consecutive blocks of at most `size` units of one layer, layers in first-seen order."""
    by_layer: dict[int, list[int]] = {}
    for n in nids:
        by_layer.setdefault(n.layer, []).append(n.neuron)
    return [WorkItem(layer, tuple(units[i : i + size]))
            for layer, units in by_layer.items() for i in range(0, len(units), size)]


class BuildWorker:
    """Holds the loaded model; builds and saves the graphs of one block per `process` call."""

    def __init__(self, config: BuildStageConfig, run_dir: Path) -> None:
        from neuron2graph.evaluate.builder import load_run_model
        from neuron2graph.store.run import Run

        self.config = config
        self.run = Run.open(run_dir)
        self.n2g = config.n2g_config()
        self.lm = load_run_model(self.run, device=config.device, dtype=config.dtype)
        from neuron2graph.units import source_for_run

        # Graphs of the units the run recorded (neurons, SAE latents, ...), never of the model's
        # neurons with the same index.
        self.source = source_for_run(self.run, self.lm)

    def process(self, item: WorkItem) -> list[dict[str, Any]]:
        from neuron2graph.n2g.graph_io import save_graph
        from neuron2graph.n2g.pipeline import NeuronRequest, build_graphs

        requests = []
        improve = self.n2g.improve
        for nid in item.nids():
            top_k = self.config.top_k
            if improve is not None and top_k is None:
                top_k = improve.max_examples
            examples = self.run.top_examples(nid, top_k)
            calibration = None
            if improve is not None:  # every recorded window of the unit: top and random text
                seen = {e.window for e in examples}
                windows = [*examples, *(e for e in self.run.top_examples(nid)
                                        if e.window not in seen)]
                seen |= {e.window for e in windows}
                windows += [e for e in self.run.sample_examples(nid) if e.window not in seen]
                calibration = [(list(e.token_ids), list(e.acts)) for e in windows]
            requests.append(NeuronRequest(
                nid.layer, nid.neuron, [list(e.token_ids) for e in examples],
                self.run.a_max(nid), acts=[list(e.acts) for e in examples],
                calibration=calibration))
        rows = []
        for nid, res in zip(item.nids(), build_graphs(self.lm, requests, self.n2g,
                                                          source=self.source), strict=True):
            save_graph(self.run.path, res.graph)
            rows.append({"neuron": str(nid), "status": "built", "n_nodes": res.graph.n_nodes(),
                         "activating": res.graph.n_activating(), **res.stats.as_dict()})
        return rows


class BuildStage(Stage[BuildStageConfig]):
    name = "build"

    def hashed(self, config: BuildStageConfig, run: Run) -> dict[str, Any]:
        fields = result_fields(config)
        fields["dtype"] = short_name(config.dtype) or recorded_dtype(run)
        return fields

    def select(self, config: BuildStageConfig, run: Run) -> list[NeuronId]:
        if config.batch_neurons < 1:
            raise N2GError("--batch-neurons must be at least 1")
        return pick_neurons(run, config)

    def group(self, config: BuildStageConfig, units: list[NeuronId]) -> list[WorkItem]:
        return blocks(units, config.batch_neurons)

    def make_worker(self, config: BuildStageConfig, run_dir: Path) -> BuildWorker:
        return BuildWorker(config, run_dir)

    def unit_file(self, run_dir: Path, nid: NeuronId) -> Path | None:
        return layout.graph_file(run_dir, nid)

    def clear(self, run: Run) -> None:
        discard_outputs(run, layout.graphs_dir(run.path), "DELETE FROM graphs")

    def finish(self, config: BuildStageConfig, run: Run, outcome: StageOutcome) -> None:
        """Derive the `graphs` rows of the units built now from their files."""
        from neuron2graph.n2g.graph_io import index_graphs

        if not outcome.rows:
            return
        conn = run.db()
        try:
            index_graphs(run.path, conn, list(outcome.rows))
        finally:
            conn.close()


STAGE = BuildStage()


def run(config: BuildStageConfig, run_dir: str | Path, *, executor: Executor | None = None,
        overwrite: bool = False, progress: bool = True) -> StageOutcome:
    """Build the graphs `config` selects in `run_dir`; returns rows of the units built now.

    Units already built with the same settings are reused (`outcome.reused`); other settings
    are refused with one line unless `overwrite`, which discards every graph of the run first.
    """
    return run_stage(STAGE, config, run_dir, executor, overwrite=overwrite, progress=progress)


__all__ = ["STAGE", "BuildStage", "BuildStageConfig", "BuildWorker", "pick_neurons", "run"]
