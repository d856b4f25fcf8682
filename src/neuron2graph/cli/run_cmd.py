"""`n2g run` (a whole model's stages, one command) and `n2g status` (what is done). docs/scale.md.

Thin: options (or a TOML file with the same names) become a `RunPlan`; the work is
`stages.pipeline.run_pipeline`. Neither torch nor ray is imported until a stage runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from neuron2graph.cli.app import (
    AddressOpt,
    CpusOpt,
    DeviceOpt,
    ExecutorOpt,
    GpusOpt,
    JsonOpt,
    ModelOpt,
    WorkersOpt,
    command,
    emit_json,
    executor_from_options,
)


@command("run")
def run_command(
    ctx: typer.Context,
    run_dir: Annotated[Path, typer.Argument(help="Run directory (created by the record stage).")],
    model: ModelOpt = "smollm2-135m",
    corpus: Annotated[str, typer.Option(help="Corpus spec: default, files, globs, hf:NAME.")] = (
        "default"
    ),
    layers: Annotated[str | None, typer.Option(help="Layers, e.g. 0-3, 0,5 or all (every layer "
                                               "of the model).")] = None,
    per_layer: Annotated[
        int | None, typer.Option(help="Random alive units per layer (default: all alive).")
    ] = None,
    neurons: Annotated[str | None, typer.Option(help="Exactly these units, e.g. 3:41,3:100.")]
    = None,
    stages: Annotated[
        str, typer.Option(help="Stages in order: record,build,eval,decode,explain,score,report.")
    ] = "record,build",
    seed: Annotated[int, typer.Option(help="Seed of the --per-layer draw.")] = 0,
    max_tokens: Annotated[int, typer.Option(help="Record stage: tokens to read.")] = 100_000,
    window: Annotated[int, typer.Option(help="Record stage: tokens per window.")] = 64,
    augment: Annotated[bool, typer.Option("--augment/--no-augment",
                                          help="Build stage: augment pruned prompts.")] = True,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML file with these options (flags win).")
    ] = None,
    device: DeviceOpt = "auto",
    dtype: Annotated[str, typer.Option(
        help="Build and eval stages' dtype: auto (the run's), fp32 or bf16 (2-3x faster N2G on "
        "CPUs with AMX, same F1; docs/scale.md).")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    executor_name: ExecutorOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    cpus_per_worker: CpusOpt = 1.0,
    gpus_per_worker: GpusOpt = 0.0,
    json_out: JsonOpt = False,
) -> None:
    """Run a model's stages in order into RUN; re-running resumes, finished work is kept."""
    from neuron2graph.ids import NeuronId, layer_option
    from neuron2graph.stages.executor import close_executor
    from neuron2graph.stages.pipeline import RunPlan, load_config, run_pipeline

    given: dict[str, Any] = load_config(config) if config is not None else {}

    def pick(name: str, value: Any) -> Any:
        """The flag when given on the command line, else the config file's value."""
        key = "executor" if name == "executor_name" else name
        return value if _explicit(ctx, name) or key not in given else given[key]

    layers_v = pick("layers", layers)
    layer_list = layer_option(str(layers_v)) if layers_v is not None else []
    neurons_v = pick("neurons", neurons)
    stages_v = pick("stages", stages)
    plan = RunPlan(
        model=pick("model", model), corpus=pick("corpus", corpus),
        layers=tuple(layer_list or ()), all_layers=layer_list is None,
        per_layer=pick("per_layer", per_layer),
        neurons=tuple(NeuronId.parse_list(str(neurons_v))) if neurons_v else (),
        stages=tuple(s.strip() for s in (stages_v if isinstance(stages_v, list)
                                         else str(stages_v).split(",")) if s.strip()),
        seed=pick("seed", seed), max_tokens=pick("max_tokens", max_tokens),
        window=pick("window", window), augment=pick("augment", augment),
        device=pick("device", device),
        dtype=None if pick("dtype", dtype) == "auto" else pick("dtype", dtype))
    plan.check()
    executor = executor_from_options(
        pick("executor_name", executor_name), pick("address", address), pick("workers", workers),
        float(pick("cpus_per_worker", cpus_per_worker)),
        float(pick("gpus_per_worker", gpus_per_worker)))
    try:
        report = run_pipeline(plan, run_dir.expanduser(), executor, progress=not quiet,
                              echo=lambda line: typer.echo(line, err=True))
    finally:
        close_executor(executor)
    if json_out:
        emit_json(report)


def _explicit(ctx: Any, name: str) -> bool:
    source = ctx.get_parameter_source(name) if ctx is not None else None
    return source is not None and source.name == "COMMANDLINE"


@command("status")
def status_command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    json_out: JsonOpt = False,
) -> None:
    """Print per stage and layer how many units are done, failed and pending."""
    from neuron2graph.stages.pipeline import run_status

    status = run_status(run_dir.expanduser())
    if json_out:
        emit_json(status)
        return
    if not status["stages"]:
        typer.echo(f"{run_dir}: no stage has run yet")
        return
    for name, st in status["stages"].items():
        typer.echo(f"{name:<16} {st['status']}")
        for layer, c in st["layers"].items():
            pend = "?" if c["pending"] is None else c["pending"]
            typer.echo(f"  layer {layer:>3}: {c['done']:>6} done {c['failed']:>5} failed "
                       f"{pend:>6} pending")
    if not status["planned"]:
        typer.echo("(pending is known for runs made by n2g run)")
