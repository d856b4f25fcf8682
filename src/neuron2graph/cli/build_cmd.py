"""`n2g build` (graphs for a run's neurons) and `n2g predict` (a graph on any text). docs/n2g.md.

Torch is imported inside the command bodies only; `predict --graph` never imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from neuron2graph.cli.app import (
    AddressOpt,
    CpusOpt,
    DeviceOpt,
    DtypeOpt,
    ExecutorOpt,
    GpusOpt,
    JsonOpt,
    WorkersOpt,
    command,
    emit_json,
    open_executor,
)
from neuron2graph.errors import N2GError


@command("build")
def build_command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory made by n2g record.")],
    neurons: Annotated[str | None, typer.Option(help="Neurons to build, e.g. 3:41,3:100.")] = None,
    layer: Annotated[int | None, typer.Option(help="Build neurons of this layer.")] = None,
    sample: Annotated[
        int | None, typer.Option(help="With --layer: this many random alive neurons (default all).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the --sample draw.")] = 0,
    top_k: Annotated[
        int | None, typer.Option("--top-k", help="Top examples per neuron (default: all recorded).")
    ] = None,
    augment: Annotated[
        bool, typer.Option("--augment/--no-augment", help="Augment the pruned prompts.")
    ] = True,
    augmenter: Annotated[
        str, typer.Option(help="causal (the studied model proposes substitutes) or a fill-mask "
                          "model name/path (e.g. a BERT folder).")
    ] = "causal",
    mask: Annotated[
        str, typer.Option(help="Saliency mask: pad, unk, delete, mean_embedding or id:N.")
    ] = "pad",
    batch_neurons: Annotated[
        int, typer.Option(help="Neurons of one layer built together in shared batches.")
    ] = 8,
    method: Annotated[
        str, typer.Option(help="paper (the paper's build) or improved (more examples, values "
                          "calibrated over every recorded window, back-off; docs/n2g.md).")
    ] = "paper",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Rebuild graphs that already exist.")
    ] = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    executor_name: ExecutorOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    cpus_per_worker: CpusOpt = 1.0,
    gpus_per_worker: GpusOpt = 0.0,
    json_out: JsonOpt = False,
) -> None:
    """Build N2G graphs for a run's neurons and save them in RUN/graphs (resumable).

    Graphs already built with the same settings are skipped, so a killed build resumes where it
    stopped; other settings (--mask, --augmenter, --top-k, --dtype) are refused unless
    --overwrite, which discards the run's graphs first.
    """
    from neuron2graph.ids import NeuronId
    from neuron2graph.n2g.stage import BuildStageConfig, run

    config = BuildStageConfig(
        neurons=tuple(NeuronId.parse_list(neurons)) if neurons else None, layer=layer,
        sample=sample, seed=seed, top_k=top_k, augmenter=augmenter if augment else None,
        mask=mask, dtype=None if dtype == "auto" else dtype, device=device,
        batch_neurons=batch_neurons, method=method)
    with open_executor(executor_name, address, workers, cpus_per_worker,
                       gpus_per_worker) as executor:
        outcome = run(config, run_dir, executor=executor, overwrite=overwrite,
                      progress=not quiet)
    report: list[dict[str, Any]] = [{"neuron": str(n), "status": "skipped (exists)"}
                                    for n in outcome.reused]
    report += [outcome.rows[n] for n in outcome.rows]
    if json_out:
        emit_json(report)
        return
    for row in report:
        if row["status"] != "built":
            typer.echo(f"{row['neuron']:>10}  {row['status']}")
            continue
        flags = f"  flags: {'; '.join(row['flags'])}" if row["flags"] else ""
        typer.echo(f"{row['neuron']:>10}  {row['n_nodes']:>4} nodes  {row['activating']:>3} "
                   f"activating  {row['seconds']:6.2f} s  "
                   f"{row['token_layers'] / 1e3:8.1f}k token-layers{flags}")
    built = sum(1 for r in report if r["status"] == "built")
    typer.echo(f"built {built}, skipped {len(report) - built}; graphs in "
               f"{outcome.run_dir / 'graphs'}")


def _load_tokenizer(run: Any | None, tokenizer_dir: Path | None) -> Any:
    """The run's tokenizer, or one from a folder holding tokenizer.json (no torch either way)."""
    if tokenizer_dir is None:
        if run is None:
            raise N2GError("no tokenizer: pass a RUN directory or --tokenizer DIR")
        return run.tokenizer()
    from neuron2graph.store.tokenizer import load_tokenizer_dir

    return load_tokenizer_dir(tokenizer_dir)


@command("predict")
def predict_command(
    run_dir: Annotated[
        Path | None, typer.Argument(help="Run directory (optional with --graph and --tokenizer).")
    ] = None,
    neuron: Annotated[str | None, typer.Option(help="Neuron id, e.g. 3:41.")] = None,
    text: Annotated[str, typer.Option(help="Text to predict on.")] = "",
    graph_file: Annotated[
        Path | None, typer.Option("--graph", help="Predict from this graph file, no model.")
    ] = None,
    tokenizer_dir: Annotated[
        Path | None, typer.Option("--tokenizer", help="Tokenizer folder (default: the run's).")
    ] = None,
    search: Annotated[
        str, typer.Option(help="auto (calibrated for an improved graph, else longest), longest "
                          "(the paper), greedy (the official code) or calibrated.")
    ] = "auto",
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Print each token with the graph's predicted and the neuron's real normalised activation."""
    from neuron2graph.ids import NeuronId
    from neuron2graph.n2g.graph import NeuronGraph
    from neuron2graph.tokens import token_pieces

    if not text:
        raise N2GError('no text given: pass --text "..."')
    if search not in ("longest", "greedy", "calibrated", "auto"):
        raise N2GError(f"unknown --search {search!r}: use auto, longest, greedy or calibrated")
    run = None
    if run_dir is not None:
        from neuron2graph.store.run import Run

        run = Run.open(run_dir)
    if graph_file is not None:
        graph = NeuronGraph.load(graph_file)
        nid = NeuronId.parse(neuron or graph.neuron)
    else:
        if run is None or neuron is None:
            raise N2GError("pass RUN and --neuron L:N, or --graph FILE (with --tokenizer DIR)")
        nid = run.check(NeuronId.parse(neuron))
        from neuron2graph.n2g.graph_io import load_graph

        saved = load_graph(run.path, nid)
        if saved is None:
            raise N2GError(f"no graph for {nid} in {run.path}: run `n2g build {run.path} "
                           f"--neurons {nid}` first")
        graph = saved
    tokenizer = _load_tokenizer(run, tokenizer_dir)
    ids = [int(i) for i in tokenizer.encode(text, add_special_tokens=False)]
    if not ids:
        raise N2GError("the text has no tokens: pass some words")
    pieces = token_pieces(tokenizer, ids)
    chosen = None if search == "auto" else search
    predicted = graph.predict(pieces, search=chosen)  # type: ignore[arg-type]
    actual: list[float] | None = None
    if graph_file is None and run is not None:
        actual = _actual(run, nid, ids, device, dtype)
    rows = [{"token": p, "predicted": round(pr, 4)} for p, pr in zip(pieces, predicted,
                                                                      strict=True)]
    if actual is not None:
        for row, a in zip(rows, actual, strict=True):
            row["actual"] = round(a, 4)
    if json_out:
        emit_json(rows)
        return
    typer.echo(f"{'token':<20} {'predicted':>9}" + (f" {'actual':>8}" if actual else ""))
    for row in rows:
        line = f"{row['token']!r:<20} {row['predicted']:>9.3f}"
        if "actual" in row:
            line += f" {row['actual']:>8.3f}"
        typer.echo(line)


def _actual(run: Any, nid: Any, ids: list[int], device: str, dtype: str) -> list[float]:
    """The unit's real activations on `ids` (with the run's BOS in front), over a_max, read
    through the run's own unit source."""
    from neuron2graph.evaluate.builder import load_run_model
    from neuron2graph.units import source_for_run

    lm = load_run_model(run, device=device, dtype=None if dtype == "auto" else dtype)
    bos = getattr(lm.tokenizer, "bos_token_id", None)
    seq = ([int(bos)] if bos is not None else []) + ids
    source = source_for_run(run, lm)
    acts = source.unit_activations([seq], nid.layer, [nid.neuron])[0][:, 0].tolist()
    acts = acts[1:] if bos is not None else acts
    a_max = run.a_max(nid)
    return [a / a_max if a_max > 0 else 0.0 for a in acts]
