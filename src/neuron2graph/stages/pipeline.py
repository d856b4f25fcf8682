"""`n2g run`: a model's stages in order, one command, resumable stage by stage and unit by unit.

`run_pipeline(plan, run_dir, executor)` runs each requested stage through its library function
(which goes through `run_stage` and its manifest where the stage has one), so re-running the
same command does nothing more and a killed run resumes. `STEPS` below is the one place that
maps a stage name to what runs it; a requested stage not registered there yet is skipped with a
line saying so (never silently). The units chosen for each layer are written to
RUN/stages/plan.json, so `n2g status` can say what is pending, not only what is done.

Importing this module imports neither torch nor ray. docs/scale.md.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from neuron2graph.dtypes import SHORT_TO_TORCH
from neuron2graph.errors import N2GError
from neuron2graph.files import write_json_atomic
from neuron2graph.ids import NeuronId
from neuron2graph.stages.executor import Executor
from neuron2graph.store import layout

ALL_STAGES = ("record", "build", "eval", "decode", "explain", "score", "report")
"""Every stage `n2g run` knows, in the order they run."""


@dataclass(frozen=True)
class RunPlan:
    """What `n2g run` was asked for (from flags or a TOML file with the same names)."""

    model: str = "smollm2-135m"
    corpus: str = "default"
    layers: tuple[int, ...] = ()
    all_layers: bool = False
    """`--layers all`: every layer of the model (recorded by the record stage, then read from
    the run by the later stages)."""
    per_layer: int | None = None
    """Random alive units per layer (seeded); None: every alive unit."""
    neurons: tuple[NeuronId, ...] = ()
    """Exactly these units (instead of `per_layer`)."""
    stages: tuple[str, ...] = ("record", "build")
    seed: int = 0
    max_tokens: int = 100_000
    window: int = 64
    augment: bool = True
    device: str = "auto"
    dtype: str | None = None
    """Build and eval stages' model dtype (None: the run's, i.e. fp32 on CPU). bf16 builds N2G
    2-3x faster on CPUs with bf16 matmul units (AMX) at the same F1 (docs/scale.md)."""

    def check(self) -> None:
        unknown = [s for s in self.stages if s not in ALL_STAGES]
        if unknown:
            raise N2GError(f"unknown stage {unknown[0]!r}: choose from {','.join(ALL_STAGES)}")
        if not self.layers and not self.neurons and not self.all_layers:
            raise N2GError("no units chosen: pass --layers 0-3 or --layers all (with --per-layer "
                           "N) or --neurons 3:41,3:100")
        if self.neurons and self.per_layer is not None:
            raise N2GError("pass either --neurons or --per-layer, not both")
        if self.dtype is not None and self.dtype not in SHORT_TO_TORCH:
            # checked before any stage runs: a typo must not cost a finished recording first
            raise N2GError(f"unknown --dtype {self.dtype!r}: use auto, "
                           f"{', '.join(SHORT_TO_TORCH)}")

    def layer_list(self) -> list[int] | None:
        """The layers asked for; None: every layer (`--layers all`)."""
        if self.all_layers:
            return None
        return sorted(set(self.layers) | {n.layer for n in self.neurons})


def load_config(path: Path) -> dict[str, Any]:
    """A `n2g run` TOML file as keyword arguments of `RunPlan` (unknown keys are refused)."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise N2GError(f"cannot read config {path}: {exc}") from None
    known = {f.name for f in fields(RunPlan)} | {"executor", "address", "workers",
                                                  "cpus_per_worker", "gpus_per_worker"}
    bad = sorted(set(doc) - known)
    if bad:
        raise N2GError(f"{path}: unknown key {bad[0]!r}; known keys: {', '.join(sorted(known))}")
    return doc


StepFn = Callable[[RunPlan, Path, Executor, bool], str]


def _record(plan: RunPlan, run_dir: Path, executor: Executor, progress: bool) -> str:
    from neuron2graph.record.config import RecordConfig
    from neuron2graph.record.stage import RecordStageConfig, run

    config = RecordStageConfig(
        model=plan.model, corpus=plan.corpus, layers=tuple(plan.layer_list() or ()),
        record=RecordConfig(window=plan.window, max_tokens=plan.max_tokens or None),
        device=plan.device, progress=progress)
    return "recorded" if run(config, run_dir) else "already recorded (same configuration)"


def _eval(plan: RunPlan, run_dir: Path, executor: Executor, progress: bool) -> str:
    """Through the library's `evaluate`; its per-unit batches go to `--executor`."""
    from neuron2graph.evaluate.run import evaluate
    from neuron2graph.ids import NeuronId

    units = _units(plan, run_dir)
    evaluate(run_dir, neurons=[NeuronId(la, u) for la, us in units.items() for u in us],
             seed=plan.seed, augmenter="causal" if plan.augment else "none",
             device=plan.device, dtype=plan.dtype, progress=progress, executor=executor)
    return f"evaluated {sum(len(v) for v in units.values())} units (table: RUN/eval/table.md)"


def _decode(plan: RunPlan, run_dir: Path, executor: Executor, progress: bool) -> str:
    from neuron2graph.decode.stage import DecodeStageConfig, run

    layers = plan.layer_list()
    outcome = run(DecodeStageConfig(model=plan.model,
                                    layers=None if layers is None else tuple(layers),
                                    device=plan.device), run_dir, executor=executor,
                  progress=progress)
    return f"decoded {outcome.computed}, already done {len(outcome.reused)}"


def _units(plan: RunPlan, run_dir: Path) -> dict[int, list[int]]:
    """The units of each layer this plan selects (seeded sample of alive units per layer)."""
    from neuron2graph.n2g.stage import BuildStageConfig, pick_neurons
    from neuron2graph.store.run import Run

    run = Run.open(run_dir)
    out: dict[int, list[int]] = {}
    if plan.neurons:
        for n in plan.neurons:
            out.setdefault(run.check(n).layer, []).append(n.neuron)
        return out
    for layer in run.layers if plan.all_layers else plan.layers:
        cfg = BuildStageConfig(layer=layer, sample=plan.per_layer, seed=plan.seed)
        out[layer] = [n.neuron for n in pick_neurons(run, cfg)]
    return out


def _build(plan: RunPlan, run_dir: Path, executor: Executor, progress: bool) -> str:
    from neuron2graph.n2g.stage import BuildStageConfig, run

    units = _units(plan, run_dir)
    built = reused = 0
    for layer, idx in units.items():
        config = BuildStageConfig(neurons=tuple(NeuronId(layer, i) for i in idx),
                                  augmenter="causal" if plan.augment else None,
                                  device=plan.device, dtype=plan.dtype)
        outcome = run(config, run_dir, executor=executor, progress=progress)
        built += outcome.computed
        reused += len(outcome.reused)
    return f"built {built}, already done {reused}"


def _plan_units(plan: RunPlan, run_dir: Path) -> tuple[NeuronId, ...]:
    return tuple(NeuronId(la, u) for la, us in _units(plan, run_dir).items() for u in us)


def _explain(plan: RunPlan, run_dir: Path, executor: Executor, progress: bool) -> str:
    """The LLM-free explainers (graph, tokens) through the explain stage; an LLM explainer needs
    an endpoint or a chat model, so it stays an explicit `n2g explain --explainer local|openai`."""
    from neuron2graph.explain.examples import ExampleConfig
    from neuron2graph.explain.stage import ExplainStageConfig, run

    parts = []
    for name in ("graph", "tokens"):
        config = ExplainStageConfig(explainer=name, examples=ExampleConfig(seed=plan.seed),
                                    augmenter="causal" if plan.augment else None,
                                    neurons=_plan_units(plan, run_dir), device=plan.device)
        out = run(config, run_dir, executor=executor, progress=progress)
        parts.append(f"{name}: {out.explained} now, {out.reused} already done")
    return "explained " + "; ".join(parts)


def _score(plan: RunPlan, run_dir: Path, executor: Executor, progress: bool) -> str:
    """Detection, fuzzing, simulation and embedding scores of every explanation, the graph and the
    lookups, without an LLM judge (`n2g score --judge local|openai` adds one)."""
    from neuron2graph.explain.examples import ExampleConfig
    from neuron2graph.explain.score_stage import ScoreStageConfig, run

    config = ScoreStageConfig(judge="none", examples=ExampleConfig(seed=plan.seed),
                              augmenter="causal" if plan.augment else None,
                              neurons=_plan_units(plan, run_dir), device=plan.device)
    out = run(config, run_dir, executor=executor, progress=progress)
    return (f"scored {out.outcome.computed}, already done {len(out.outcome.reused)} "
            "(table: RUN/explain/table.md)")


def _report(plan: RunPlan, run_dir: Path, executor: Executor, progress: bool) -> str:
    from neuron2graph.web.static_site import write_report

    return f"static report: {write_report(run_dir, run_dir / 'report')}"


STEPS: dict[str, StepFn] = {"record": _record, "build": _build, "eval": _eval,
                            "decode": _decode, "explain": _explain, "score": _score,
                            "report": _report}
"""Stage name -> what runs it. Add a stage here once it has a library function (its CLI
command is its reference use)."""


def write_plan(run_dir: Path, units: dict[int, list[int]], stages: tuple[str, ...]) -> None:
    write_json_atomic(layout.stages_dir(run_dir) / "plan.json", {
        "format": "neuron2graph/plan", "stages": list(stages),
        "units": {str(k): v for k, v in sorted(units.items())}})


def run_pipeline(plan: RunPlan, run_dir: Path, executor: Executor, *, progress: bool = True,
                 echo: Callable[[str], None] = print) -> list[dict[str, str]]:
    """Run the plan's stages in order; returns one `{"stage", "status", "detail"}` per stage."""
    plan.check()
    report: list[dict[str, str]] = []
    planned = False
    for name in ALL_STAGES:
        if name not in plan.stages:
            continue
        step = STEPS.get(name)
        if step is None:
            msg = "not available in this version (no library function registered in STEPS)"
            echo(f"[{name}] skipped: {msg}")
            report.append({"stage": name, "status": "skipped", "detail": msg})
            continue
        if name != "record" and not planned:
            if not layout.manifest_file(run_dir).is_file():
                raise N2GError(f"{run_dir} holds no recording: add record to --stages")
            write_plan(run_dir, _units(plan, run_dir), plan.stages)
            planned = True
        echo(f"[{name}] running")
        detail = step(plan, run_dir, executor, progress)
        echo(f"[{name}] {detail}")
        report.append({"stage": name, "status": "done", "detail": detail})
    return report


def run_status(run_dir: Path) -> dict[str, Any]:
    """Per stage and layer: units done, failed and pending (pending needs RUN/stages/plan.json,
    written by `n2g run`; stages run by hand show done and failed only)."""
    sdir = layout.stages_dir(run_dir)
    if not run_dir.is_dir():
        raise N2GError(f"{run_dir} is not a run directory: pass the folder given to n2g run")
    plan_file = sdir / "plan.json"
    plan = json.loads(plan_file.read_text()) if plan_file.is_file() else None
    wanted = {int(k): set(v) for k, v in (plan or {}).get("units", {}).items()}
    from neuron2graph.stages.manifest import parse_ranges

    stages: dict[str, Any] = {}
    for path in sorted(sdir.glob("*.json")) if sdir.is_dir() else []:
        if path.name == "plan.json":
            continue
        doc = json.loads(path.read_text(encoding="utf-8"))
        done = {int(k): set(parse_ranges(str(v))) for k, v in (doc.get("done") or {}).items()}
        failed: dict[int, int] = {}
        for key in doc.get("failed") or {}:
            layer = int(str(key).split(":")[0]) if ":" in str(key) else -1
            failed[layer] = failed.get(layer, 0) + 1
        layers: dict[str, dict[str, int | None]] = {}
        for layer in sorted(set(done) | set(failed) | (set(wanted) if done else set())):
            have = done.get(layer, set())
            pend = len(wanted[layer] - have) if layer in wanted else None
            layers[str(layer)] = {"done": len(have), "failed": failed.get(layer, 0),
                                  "pending": pend}
        stages[path.stem] = {"status": doc.get("status"), "updated": doc.get("updated"),
                             "layers": layers}
    return {"run": str(run_dir), "planned": plan is not None, "stages": stages}


__all__ = ["ALL_STAGES", "STEPS", "RunPlan", "load_config", "run_pipeline", "run_status"]
