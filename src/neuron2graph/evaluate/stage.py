"""The eval stage: the paper's protocol (protocol.py) run through the shared stage contract.

Selection happens on the driver (`protocol.select_neurons`); each work item is a batch of units
of one layer (`interleave_chunks`: round-robin over layers, so a run stopped early covers every
layer about evenly). A worker holds the model-backed graph builder, builds every registered graph
predictor on the train halves, scores every predictor, and writes one file per unit
(RUN/eval/neurons/L_N.json, atomic) — no SQLite. The driver derives the `eval` table from those
files (`finish`). Resume and the refusal of other settings come from RUN/stages/eval.json.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuron2graph.evaluate import storage
from neuron2graph.evaluate.protocol import (
    BuildFn,
    EvalConfig,
    RunLike,
    _evaluate_chunk,
    interleave_chunks,
)
from neuron2graph.ids import NeuronId
from neuron2graph.stages.config import runtime, scope
from neuron2graph.stages.stage import Stage, StageOutcome, WorkItem, discard_outputs
from neuron2graph.store import layout

if TYPE_CHECKING:
    from neuron2graph.store.run import Run


@dataclass(frozen=True)
class EvalStageConfig:
    """Settings of `n2g eval` (docs/evaluation.md)."""

    protocol: EvalConfig = field(default_factory=EvalConfig)
    """The per-unit protocol settings (hashed, batch size excepted)."""
    selected: tuple[NeuronId, ...] = scope(())
    """The units to evaluate, chosen on the driver by `select_neurons`."""
    augmenter: str | None = runtime("causal")
    """The builder's augmenter (hashed through `protocol.build`, which records it)."""
    device: str = runtime("auto")
    dtype: str | None = runtime(None)


def quiet_libraries() -> None:
    """Keep a long run's log readable: no transformers/tokenizers chatter."""
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=UserWarning)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


class EvalWorker:
    def __init__(self, config: EvalStageConfig, run: RunLike, builder: BuildFn) -> None:
        self.config, self.run, self.builder = config, run, builder

    def process(self, item: WorkItem) -> list[dict[str, Any]]:
        rows = _evaluate_chunk(self.run, item.nids(), self.config.protocol, self.builder)
        for row in rows:
            storage.save_neuron(self.run.path, None, row)  # a file per unit; no SQLite here
        return rows


class EvalStage(Stage[EvalStageConfig]):
    """The eval stage. `make_builder`/`run` let tests pass a fake builder and run (the local
    executor only: closures do not pickle); by default the worker loads the run's model."""

    name = "eval"
    fail_fast = False  # one bad batch must not end a long evaluation

    def __init__(self, make_builder: Callable[[], BuildFn] | None = None,
                 run: RunLike | None = None) -> None:
        self.make_builder = make_builder
        self.run = run

    def open_run(self, config: EvalStageConfig, run_dir: Path) -> Any:
        if self.run is not None:
            return self.run
        return super().open_run(config, run_dir)

    def hashed(self, config: EvalStageConfig, run: Run) -> dict[str, Any]:
        return config.protocol.settings()

    def select(self, config: EvalStageConfig, run: Run) -> list[NeuronId]:
        return list(config.selected)

    def group(self, config: EvalStageConfig, units: list[NeuronId]) -> list[WorkItem]:
        return [WorkItem(c[0].layer, tuple(n.neuron for n in c))
                for c in interleave_chunks(units, config.protocol.batch_neurons)]

    def make_worker(self, config: EvalStageConfig, run_dir: Path) -> EvalWorker:
        run = self.open_run(config, run_dir)
        if self.make_builder is not None:
            return EvalWorker(config, run, self.make_builder())
        from neuron2graph.evaluate.builder import load_run_model, model_builder, n2g_config

        quiet_libraries()
        lm = load_run_model(run, device=config.device, dtype=config.dtype)
        return EvalWorker(config, run, model_builder(lm, n2g_config(augmenter=config.augmenter),
                                                     run))

    def unit_file(self, run_dir: Path, nid: NeuronId) -> Path | None:
        return layout.eval_unit_file(run_dir, nid)

    def clear(self, run: Run) -> None:
        discard_outputs(run, layout.eval_dir(run.path), "DROP TABLE IF EXISTS eval")

    def finish(self, config: EvalStageConfig, run: Run, outcome: StageOutcome) -> None:
        """Derive the `eval` rows of the units scored now from their files."""
        if not outcome.rows:
            return
        conn = run.db()
        try:
            storage.ensure_table(conn)
            for nid in outcome.rows:
                row = storage.load_neuron(run.path, nid)
                if row is not None:
                    storage.upsert_row(conn, row)
        finally:
            conn.close()


__all__ = ["EvalStage", "EvalStageConfig", "EvalWorker", "quiet_libraries"]
