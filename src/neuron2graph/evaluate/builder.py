"""The graph builder the protocol uses: our N2G pipeline, and the same with the official choices.

The "official choices" row switches on exactly the three behaviours of the official code that we
fix, and nothing else, so the difference between the two rows is the effect of the fixes:

- pruning tries every 5th context length (capped at 30) and accepts its last try
  (`PruneConfig.strategy="official"`);
- the graph folds case and whitespace (`BuildConfig.fold=True`, merging ` The` and `the`);
- prediction is the greedy search without backtracking (`search="greedy"`, set in protocol.py).

Everything else (saliency mask, augmenter, thresholds, the examples) is shared by both rows.
Torch is imported lazily: this module is imported by the CLI only when a model is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from neuron2graph.dtypes import short_name
from neuron2graph.errors import N2GError
from neuron2graph.evaluate.predictors import graph_predictors, official_config
from neuron2graph.evaluate.protocol import BuildFn, RunLike, TrainSet

if TYPE_CHECKING:
    from neuron2graph.models.loading import LoadedModel
    from neuron2graph.n2g.pipeline import N2GConfig


def n2g_config(
    *, augmenter: str | None = "causal", max_batch_tokens: int | None = None
) -> N2GConfig:
    """Our default N2G configuration with the eval CLI's overrides."""
    from neuron2graph.n2g.pipeline import N2GConfig

    cfg = N2GConfig(augmenter=augmenter)
    if max_batch_tokens:
        cfg = replace(cfg, max_batch_tokens=max_batch_tokens)
    return cfg


def config_settings(cfg: N2GConfig) -> dict[str, Any]:
    """The N2G settings that change results (batch sizes do not), for the resume fingerprint."""
    import json

    out = asdict(cfg)
    out.pop("max_batch_tokens", None)
    # As stored (tuples become lists), so a resumed run compares equal to the saved settings.
    return dict(json.loads(json.dumps(out)))


def model_builder(
    lm: LoadedModel, base: N2GConfig, run: RunLike | None = None, *, reuse_acts: bool = True
) -> BuildFn:
    """A BuildFn running `build_graphs` on `lm`.

    With `reuse_acts`, the recorded activations of the train examples are handed to the builder
    (it would otherwise run the model once more on every example to measure them again).
    """
    from neuron2graph.n2g.pipeline import NeuronRequest, build_graphs
    from neuron2graph.units import source_for_run

    configs = {p.name: p.n2g_config(base) for p in graph_predictors() if p.n2g_config}
    # The run's own units (MLP neurons, SAE latents, ...): graphs explain what was recorded.
    source = source_for_run(run, lm) if run is not None else None

    def build(sets: Sequence[TrainSet], method: str) -> list[Any]:
        if method not in configs:
            raise N2GError(f"unknown graph method {method!r}: use one of {', '.join(configs)}")
        cfg = configs[method]
        requests = []
        for ts in sets:
            acts = ts.acts
            if acts is None and reuse_acts and run is not None:
                acts = _recorded_acts(run, ts)
            examples, calibration = ts.examples, None
            if cfg.improve is not None:  # more examples, and every train window to calibrate
                n = cfg.improve.max_examples
                examples = (ts.examples + ts.more)[:n]
                if acts is not None:
                    acts = (acts + ts.more_acts)[:n]
                calibration = ts.calibration
            requests.append(NeuronRequest(layer=ts.nid.layer, neuron=ts.nid.neuron,
                                          examples=examples, a_max=ts.a_max, acts=acts,
                                          calibration=calibration))
        return [r.graph for r in build_graphs(lm, requests, cfg, source=source)]

    return build


def _recorded_acts(run: RunLike, ts: TrainSet) -> list[list[float]] | None:
    by_ids = {tuple(ex.token_ids): list(ex.acts) for ex in run.top_examples(ts.nid)}
    acts = [by_ids.get(tuple(ids)) for ids in ts.examples]
    if any(a is None for a in acts):
        return None
    return [a for a in acts if a is not None]


def load_run_model(run: RunLike, *, device: str = "auto", dtype: str | None = None) -> LoadedModel:
    """The model a run was recorded with (by default in the dtype it was recorded in).

    A weights hash that differs from the run's is reported on stderr rather than refused: the
    hash also changes with the dtype (a GPU bf16 recording evaluated in fp32 on a CPU), which is
    legitimate; genuinely other weights show up as a poor match of the recorded activations.
    """
    import sys

    from neuron2graph.models.loading import load_model

    model = run.manifest.get("model")
    spec = model.get("spec") if isinstance(model, dict) else model
    if not isinstance(spec, str) or not spec:
        raise N2GError(f"{run.path}/run.json names no model: re-record the run with n2g record")
    if dtype in (None, "auto"):
        recorded = (model.get("dtype") if isinstance(model, dict) else None) or (
            run.manifest.get("identity") or {}
        ).get("dtype")
        dtype = short_name(recorded)
    lm = load_model(spec, device=device, dtype=dtype)
    want = run.manifest.get("weights_hash")
    if want and want != lm.weights_hash:
        print(
            f"warning: weights hash {lm.weights_hash} differs from the run's ({want}); fine if "
            "only the dtype differs, otherwise evaluate with the model the run was recorded with",
            file=sys.stderr,
        )
    return lm


__all__ = ["config_settings", "load_run_model", "model_builder", "n2g_config", "official_config"]
