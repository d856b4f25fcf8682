"""`n2g explain` and `n2g score`: sentences for units, and scores for every kind of explanation.

Thin: options become an `ExplainStageConfig` / `ScoreStageConfig` and the stages'
`run(config, run_dir)` (explain/stage.py, explain/score_stage.py) do the work (docs/explain.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from neuron2graph.cli.app import (
    AddressOpt,
    CpusOpt,
    ExecutorOpt,
    GpusOpt,
    JsonOpt,
    WorkersOpt,
    command,
    emit_json,
    open_executor,
)

RunArg = Annotated[Path, typer.Argument(help="Run directory made by n2g record.")]
NeuronsOpt = Annotated[str | None, typer.Option(help="Units to use, e.g. 3:41,5:7.")]
LayersOpt = Annotated[
    str | None, typer.Option(help="Layers to draw units from, e.g. 0,10, 0-3 or all (default: all "
                             "recorded).")
]
PerLayerOpt = Annotated[int, typer.Option(help="Random usable units per layer (seeded).")]
SeedOpt = Annotated[int, typer.Option(help="Seed of the unit draw and of every example draw.")]
CtxOpt = Annotated[int, typer.Option(help="Tokens per context (delphi: 32).")]
TrainOpt = Annotated[str, typer.Option(help="Train contexts: top, quantiles or mix.")]
NTrainOpt = Annotated[int, typer.Option(help="Activating contexts shown to explainers.")]
NTestOpt = Annotated[int, typer.Option(help="Activating contexts scored (across quantiles).")]
NNegOpt = Annotated[int, typer.Option(help="Non-activating contexts scored.")]
NHardOpt = Annotated[int, typer.Option(help="Hard negatives scored (trigger tokens, no firing).")]
MinActOpt = Annotated[
    float, typer.Option(help="A context is activating when its max reaches this share of a_max.")
]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option(help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 "
                 "(key from OPENAI_API_KEY)."),
]
ConcOpt = Annotated[int, typer.Option(help="Requests in flight (openai) or prompts per batch.")]
TimeoutOpt = Annotated[float, typer.Option(help="Seconds per request before it counts as failed.")]
DeviceOpt = Annotated[str, typer.Option(help="Device of in-process models: cpu or cuda.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Redo finished units.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


def _examples(seed: int, ctx_len: int, train: str, n_train: int, n_test: int,
              n_negative: int, n_hard: int, min_act: float) -> Any:
    from neuron2graph.explain.examples import ExampleConfig

    return ExampleConfig(ctx_len=ctx_len, n_train=n_train, n_test=n_test,
                         n_negative=n_negative, n_hard=n_hard, train=train,  # type: ignore[arg-type]
                         min_act=min_act, seed=seed)


def _scope(neurons: str | None, layers: str | None) -> dict[str, Any]:
    """Scope fields; a bad --layers value is refused before anything is opened."""
    from neuron2graph.ids import NeuronId, layer_option

    wanted = layer_option(layers)
    return {"neurons": tuple(NeuronId.parse_list(neurons)) if neurons else None,
            "layers": tuple(wanted) if wanted is not None else None}


@command("explain")
def explain_command(
    run_dir: RunArg,
    explainer: Annotated[
        str, typer.Option(help="graph (from the N2G graph), tokens, local (in-process HF chat "
                          "model) or openai (any OpenAI-compatible endpoint).")
    ] = "graph",
    model: Annotated[
        str | None, typer.Option(help="local: alias/folder/hub name (default smollm2-135m); "
                                 "openai: the endpoint's model name.")
    ] = None,
    base_url: BaseUrlOpt = None,
    concurrency: ConcOpt = 4,
    timeout: TimeoutOpt = 60.0,
    max_examples: Annotated[
        int, typer.Option(help="local/openai: train contexts shown in the prompt.")
    ] = 20,
    max_new_tokens: Annotated[
        int, typer.Option(help="local/openai: most tokens of the answer.")
    ] = 120,
    neurons: NeuronsOpt = None,
    layers: LayersOpt = None,
    per_layer: PerLayerOpt = 5,
    seed: SeedOpt = 0,
    ctx_len: CtxOpt = 32,
    train: TrainOpt = "mix",
    n_train: NTrainOpt = 20,
    n_test: NTestOpt = 20,
    n_negative: NNegOpt = 20,
    n_hard: NHardOpt = 10,
    min_act: MinActOpt = 0.2,
    augmenter: Annotated[str, typer.Option(help="N2G augmenter for graphs: causal or none.")] = (
        "causal"),
    device: DeviceOpt = "cpu",
    executor_name: ExecutorOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    cpus_per_worker: CpusOpt = 1.0,
    gpus_per_worker: GpusOpt = 0.0,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Write one explanation per unit into RUN/explain/explanations/<explainer>/ (resumable;
    manifest RUN/stages/explain-<explainer>.json)."""
    from neuron2graph.explain.stage import ExplainStageConfig, run

    config = ExplainStageConfig(
        explainer=explainer, model=model, max_examples=max_examples,
        max_new_tokens=max_new_tokens, augmenter=None if augmenter == "none" else augmenter,
        examples=_examples(seed, ctx_len, train, n_train, n_test, n_negative, n_hard, min_act),
        per_layer=per_layer, base_url=base_url, concurrency=concurrency, timeout=timeout,
        device=device, **_scope(neurons, layers))
    config.check()
    with open_executor(executor_name, address, workers, cpus_per_worker,
                       gpus_per_worker) as executor:
        out = run(config, run_dir, executor=executor, overwrite=overwrite,
                  progress=not quiet and not json_out)
    if json_out:
        emit_json(out.to_json(out.outcome.run_dir, explainer))
        return
    typer.echo(f"{out.explained} units explained now, {out.reused} reused ({explainer}) in "
               f"{out.seconds:.1f} s; status {out.status or '{}'}")
    bad = out.status.get("unparseable", 0) + out.status.get("failed", 0)
    if bad:
        typer.echo(f"warning: {bad} answers unparseable or failed (kept in the files with the "
                   "raw answer; see status)", err=True)


@command("score")
def score_command(
    run_dir: RunArg,
    scorers: Annotated[
        str, typer.Option(help="Comma list of detection,fuzz,simulation,embedding,surprisal,"
                          "intervention.")
    ] = "detection,fuzz,simulation,embedding",
    judge: Annotated[
        str, typer.Option(help="Who judges sentences for detection/fuzz/simulation: local, "
                          "openai or none (predictors only).")
    ] = "local",
    judge_model: Annotated[
        str | None, typer.Option(help="local: alias/folder (default smollm2-135m); openai: name.")
    ] = None,
    surprisal_model: Annotated[
        str, typer.Option(help="Base LM for surprisal (in-process).")
    ] = "smollm2-135m",
    intervention_strength: Annotated[
        float, typer.Option(help="Intervention: steer the unit to this many times its recorded "
                            "max activation.")
    ] = 4.0,
    base_url: BaseUrlOpt = None,
    concurrency: ConcOpt = 8,
    timeout: TimeoutOpt = 60.0,
    graph: Annotated[
        bool, typer.Option("--graph/--no-graph", help="Also score the N2G graph (builds it).")
    ] = True,
    neurons: NeuronsOpt = None,
    layers: LayersOpt = None,
    per_layer: PerLayerOpt = 5,
    seed: SeedOpt = 0,
    ctx_len: CtxOpt = 32,
    train: TrainOpt = "mix",
    n_train: NTrainOpt = 20,
    n_test: NTestOpt = 20,
    n_negative: NNegOpt = 20,
    n_hard: NHardOpt = 10,
    min_act: MinActOpt = 0.2,
    device: DeviceOpt = "cpu",
    executor_name: ExecutorOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    cpus_per_worker: CpusOpt = 1.0,
    gpus_per_worker: GpusOpt = 0.0,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Score every explanation of the units, and their graph and lookups, on the same examples.

    Writes RUN/explain/scores/L_N.json per unit and RUN/explain/table.md (one table per layer);
    manifest RUN/stages/score.json.
    """
    from neuron2graph.explain.score_stage import ScoreStageConfig, run
    from neuron2graph.explain.scoring import check_scorers, markdown

    names = check_scorers([s.strip() for s in scorers.split(",") if s.strip()])
    config = ScoreStageConfig(
        scorers=names, judge=judge, judge_model=judge_model, surprisal_model=surprisal_model,
        intervention_strength=intervention_strength, graph=graph,
        examples=_examples(seed, ctx_len, train, n_train, n_test, n_negative, n_hard, min_act),
        per_layer=per_layer, base_url=base_url, concurrency=concurrency, timeout=timeout,
        device=device, **_scope(neurons, layers))
    config.check()
    with open_executor(executor_name, address, workers, cpus_per_worker,
                       gpus_per_worker) as executor:
        out = run(config, run_dir, executor=executor, overwrite=overwrite,
                  progress=not quiet and not json_out)
    table = out.table()
    failed = out.failed_calls
    computed, reused = out.outcome.computed, len(out.outcome.reused)
    if json_out:
        emit_json({"run": str(out.outcome.run_dir), "scorers": list(names),
                   "units": len(out.rows), "computed": computed, "reused": reused,
                   "failed_calls": failed, "seconds": round(out.seconds, 2),
                   "excluded": out.excluded, "layers": {str(k): v for k, v in table.items()}})
        return
    typer.echo(markdown(table))
    typer.echo(f"\n{len(out.rows)} units ({computed} scored now, {reused} reused) in "
               f"{out.seconds:.1f} s; failed calls: {failed or 'none'}")


@command("llm-serve")
def llm_serve_command(
    model: Annotated[
        str, typer.Option(help="Alias (smollm2-135m), local folder or hub name of a causal LM.")
    ] = "smollm2-135m",
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = (
        "127.0.0.1"),
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    name: Annotated[
        str | None, typer.Option(help="Model name clients send (default: --model).")
    ] = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Serve a transformers causal LM as an OpenAI-compatible endpoint (/v1/models,
    /v1/chat/completions with logprobs, /v1/completions with echo + logprobs)."""
    from neuron2graph.explain.server import serve

    typer.echo(f"serving {name or model} on http://{host}:{port}/v1 (Ctrl-C stops)", err=True)
    serve(model, host=host, port=port, device=device, name=name)
