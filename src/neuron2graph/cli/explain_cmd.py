"""`n2g explain` and `n2g score`: sentences for units, and scores for every kind of explanation.

Thin: options become an `ExampleConfig`, an explainer or judges, and the library functions of
`neuron2graph.explain` do the work (docs/explain.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from neuron2graph.cli.app import JsonOpt, command, emit_json

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


def _setup(run_dir: Path, neurons: str | None, layers: str | None, per_layer: int, seed: int,
           ctx_len: int, train: str, n_train: int, n_test: int, n_negative: int, n_hard: int,
           min_act: float, overwrite: bool) -> tuple[Any, Any, Any]:
    from dataclasses import asdict

    from neuron2graph.errors import N2GError
    from neuron2graph.explain import storage
    from neuron2graph.explain.examples import ExampleConfig
    from neuron2graph.explain.pipeline import select_units
    from neuron2graph.ids import NeuronId, layer_option
    from neuron2graph.store.run import Run

    wanted_layers = layer_option(layers)  # a bad value is refused before anything is opened
    run = Run.open(run_dir)
    cfg = ExampleConfig(ctx_len=ctx_len, n_train=n_train, n_test=n_test, n_negative=n_negative,
                        n_hard=n_hard, train=train, min_act=min_act, seed=seed)  # type: ignore[arg-type]
    cfg.check()
    storage.check_settings(run.path, asdict(cfg), overwrite=overwrite)
    wanted = NeuronId.parse_list(neurons) if neurons else None
    sel = select_units(run, cfg, neurons=wanted, layers=wanted_layers,
                       per_layer=per_layer)
    if not sel.selected:
        raise N2GError(f"no usable unit ({len(sel.excluded)} excluded: "
                       f"{sel.excluded[0]['reason'] if sel.excluded else 'none recorded'})")
    return run, cfg, sel


def chat_model(kind: str, model: str | None, base_url: str | None, concurrency: int,
               timeout: float, device: str) -> Any:
    from neuron2graph.errors import N2GError
    from neuron2graph.explain.llm import LocalChat, OpenAIChat

    if kind == "local":
        return LocalChat(model or "smollm2-135m", device=device, batch_size=concurrency)
    if kind == "openai":
        if not model:
            raise N2GError("--explainer/--judge openai needs --model (the endpoint's model name)")
        return OpenAIChat(model, base_url=base_url, concurrency=concurrency, timeout=timeout)
    raise N2GError(f"unknown model backend {kind!r}: use local or openai")


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
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Write one explanation per unit into RUN/explain/explanations/<explainer>/ (resumable)."""
    from neuron2graph.errors import N2GError
    from neuron2graph.explain.explainers import GraphExplainer, LLMExplainer, TokensExplainer
    from neuron2graph.explain.pipeline import Graphs, explain_units

    run, cfg, sel = _setup(run_dir, neurons, layers, per_layer, seed, ctx_len, train, n_train,
                           n_test, n_negative, n_hard, min_act, overwrite)
    graphs = None
    impl: Any
    if explainer == "graph":
        impl = GraphExplainer()
        graphs = Graphs(run, device=device, augmenter=None if augmenter == "none" else augmenter)
    elif explainer == "tokens":
        impl = TokensExplainer()
    elif explainer in ("local", "openai"):
        impl = LLMExplainer(chat_model(explainer, model, base_url, concurrency, timeout, device),
                            explainer, max_tokens=max_new_tokens, max_examples=max_examples)
    else:
        raise N2GError(f"unknown explainer {explainer!r}: use graph, tokens, local or openai")
    out = explain_units(run, sel.selected, cfg, impl, graphs=graphs, batch=max(1, concurrency),
                        overwrite=overwrite, progress=not quiet and not json_out)
    doc = {"run": str(run.path), "explainer": explainer, "units": [str(n) for n in sel.selected],
           "excluded": sel.excluded, "explained": out.done, "reused": out.reused,
           "status": out.counts, "seconds": round(out.seconds, 2),
           "model_seconds": round(out.model_seconds, 2),
           "seconds_per_unit": round(out.seconds / out.done, 3) if out.done else None}
    if json_out:
        emit_json(doc)
        return
    typer.echo(f"{out.done} units explained now, {out.reused} reused ({explainer}) in "
               f"{out.seconds:.1f} s; status {out.counts or '{}'}")
    bad = out.counts.get("unparseable", 0) + out.counts.get("failed", 0)
    if bad:
        typer.echo(f"warning: {bad} answers unparseable or failed (kept in the files with the "
                   "raw answer; see status)", err=True)


@command("score")
def score_command(
    run_dir: RunArg,
    scorers: Annotated[
        str, typer.Option(help="Comma list of detection,fuzz,simulation,embedding,surprisal.")
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
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Score every explanation of the units, and their graph and lookups, on the same examples.

    Writes RUN/explain/scores/L_N.json per unit and RUN/explain/table.md (one table per layer).
    """
    from neuron2graph.explain.pipeline import Graphs
    from neuron2graph.explain.scoring import (
        JUDGED,
        Scorers,
        check_scorers,
        layer_table,
        markdown,
        score_units,
    )
    from neuron2graph.store.atomic import write_text_atomic

    names = check_scorers([s.strip() for s in scorers.split(",") if s.strip()])
    run, cfg, sel = _setup(run_dir, neurons, layers, per_layer, seed, ctx_len, train, n_train,
                           n_test, n_negative, n_hard, min_act, overwrite)
    sc = Scorers(names)
    if judge != "none" and any(n in JUDGED for n in names):
        sc.judge = chat_model(judge, judge_model, base_url, concurrency, timeout, device)
    if "surprisal" in names:
        from neuron2graph.explain.llm import LocalChat

        same = judge == "local" and (judge_model or "smollm2-135m") == surprisal_model
        sc.lm = sc.judge if same else LocalChat(surprisal_model, device=device)
    graphs = Graphs(run, device=device) if graph else None
    out = score_units(run, sel.selected, cfg, sc, graphs=graphs, overwrite=overwrite,
                      progress=not quiet and not json_out)
    table = layer_table(out.rows)
    md = markdown(table)
    write_text_atomic(run.path / "explain" / "table.md", md + "\n")
    failed: dict[str, int] = {}
    for row in out.rows:
        for k, v in row.get("failed", {}).items():
            failed[k] = failed.get(k, 0) + v
    if json_out:
        emit_json({"run": str(run.path), "scorers": list(names), "units": len(out.rows),
                   "computed": out.computed, "reused": out.reused, "failed_calls": failed,
                   "seconds": round(out.seconds, 2), "excluded": sel.excluded,
                   "layers": {str(k): v for k, v in table.items()}})
        return
    typer.echo(md)
    typer.echo(f"\n{len(out.rows)} units ({out.computed} scored now, {out.reused} reused) in "
               f"{out.seconds:.1f} s; failed judge calls: {failed or 'none'}")


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
