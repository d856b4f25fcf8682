"""`evaluate(...)`: the whole `n2g eval` as a library function (select, protocol, report).

The CLI (`cli/eval_cmd.py`) and `n2g run` (`stages/pipeline.py`) both call it, so neither holds
evaluation logic. Per-unit work goes through the stage contract (`evaluate/stage.py`, run by
`run_protocol`); this function chooses the units, assembles the hashed settings, and writes the
report (RUN/eval/results.json, table.md, f1_by_layer.png) from the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuron2graph.errors import N2GError

if TYPE_CHECKING:
    from neuron2graph.stages.executor import Executor


@dataclass
class EvalResult:
    results: dict[str, Any]
    """The report document (`evaluate.report.build_results`)."""
    paths: dict[str, Path]
    outcome: Any
    """The protocol's outcome: rows, computed/reused counts, failed and pending units."""


def evaluate(
    run_dir: str | Path, *, layers: list[int] | None = None, per_layer: int = 50,
    neurons: list[Any] | None = None, seed: int = 0, top_k: int = 20, n_train: int = 10,
    min_firing_examples: int = 2, official: bool = True, false_firing: bool = True,
    improved: bool = True, protocol: str = "paper", split: str = "test", min_act: float = 0.2,
    augmenter: str | None = "causal", batch_neurons: int = 1, max_minutes: float | None = None,
    device: str = "auto", dtype: str | None = None, overwrite: bool = False,
    progress: bool = True, executor: Executor | None = None,
) -> EvalResult:
    """Evaluate graphs on held-out top examples (paper §4) with baselines; see docs/evaluation.md.

    `neurons` (NeuronIds) replaces the seeded random draw of `per_layer` alive units per layer.
    `executor` (`stages.executor.Executor`, default local) runs the per-unit batches; selection
    and the report stay in this process, so results do not depend on it.
    """
    from neuron2graph.evaluate.builder import config_settings, n2g_config
    from neuron2graph.evaluate.protocol import EvalConfig, run_protocol, select_neurons
    from neuron2graph.evaluate.report import build_results, write_report
    from neuron2graph.store.run import Run

    if batch_neurons < 1:
        raise N2GError("--batch-neurons must be at least 1")
    if not 0 < n_train < top_k:
        raise N2GError(f"--n-train {n_train} must be between 1 and --top-k - 1 ({top_k - 1})")
    run = Run.open(run_dir)
    aug = None if (augmenter or "").lower() in ("none", "off", "") else augmenter
    model = run.manifest.get("model")
    cfg = EvalConfig(
        seed=seed, k=top_k, n_train=n_train, min_firing_examples=min_firing_examples,
        official=official, false_firing=false_firing, improved=improved, protocol=protocol,
        split=split, min_act=min_act,
        build={"model": model.get("spec") if isinstance(model, dict) else model,
               "weights_hash": run.manifest.get("weights_hash"),
               "n2g": config_settings(n2g_config(augmenter=aug))},
        batch_neurons=batch_neurons,
    )
    cfg.check()
    if improved:
        from neuron2graph.evaluate.predictors import improved_config

        cfg.build["improved"] = config_settings(improved_config(n2g_config(augmenter=aug)))
    selection = select_neurons(run, cfg, layers=layers, per_layer=per_layer, neurons=neurons)
    if not selection.selected:
        raise N2GError(
            f"no alive neuron to evaluate ({len(selection.excluded)} excluded, see reasons with "
            "--json): record more text, or lower --min-firing-examples"
        )
    outcome = run_protocol(run, selection, cfg, overwrite=overwrite, progress=progress,
                           max_seconds=None if max_minutes is None else 60 * max_minutes,
                           augmenter=aug, device=device, dtype=dtype, executor=executor)
    if not outcome.rows:
        raise N2GError(
            f"no neuron finished ({len(outcome.failed)} failed, {len(outcome.pending)} pending): "
            "see the warnings above, or raise --max-minutes"
        )
    request = {"layers": layers, "per_layer": None if neurons else per_layer,
               "neurons": [str(n) for n in neurons] if neurons else None}
    results = build_results(run, selection, cfg, outcome, request)
    return EvalResult(results, write_report(run.path, results), outcome)


__all__ = ["EvalResult", "evaluate"]
