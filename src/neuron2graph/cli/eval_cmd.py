"""`n2g eval`: the paper's Table 1 on a recorded run, with baselines (docs/evaluation.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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


@command("eval")
def eval_command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory made by n2g record.")],
    layers: Annotated[
        str | None,
        typer.Option(help="Layers to sample neurons from, e.g. 0,5,10, 0-3 or all (default: "
                     "all recorded layers)."),
    ] = None,
    per_layer: Annotated[
        int, typer.Option(help="Random alive neurons per layer (the paper: 50).")
    ] = 50,
    neurons: Annotated[
        str | None,
        typer.Option(help="Evaluate these neurons instead of a random draw, e.g. 3:41,5:7."),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the neuron draw and the train/test splits.")
    ] = 0,
    top_k: Annotated[
        int, typer.Option("--top-k", help="Top examples per neuron (split train/test).")
    ] = 20,
    n_train: Annotated[int, typer.Option(help="Examples in the train half.")] = 10,
    min_firing_examples: Annotated[
        int,
        typer.Option(help="A neuron is alive when at least this many of its top examples fire."),
    ] = 2,
    official: Annotated[
        bool,
        typer.Option("--official/--no-official",
                     help="Also build the official-choices graph (doubles build time)."),
    ] = True,
    false_firing: Annotated[
        bool,
        typer.Option("--false-firing/--no-false-firing",
                     help="Score false firing on the run's random sample of ordinary text."),
    ] = True,
    improved: Annotated[
        bool,
        typer.Option("--improved/--no-improved",
                     help="Also build and score the improved N2G method (docs/n2g.md)."),
    ] = True,
    protocol: Annotated[
        str,
        typer.Option(help="paper: held-out top examples (the paper's Table 1); levels: held-out "
                     "windows across all activation levels plus random text."),
    ] = "paper",
    split: Annotated[
        str, typer.Option(help="Levels protocol: score the test windows, or val to tune settings.")
    ] = "test",
    min_act: Annotated[
        float, typer.Option(help="Levels protocol: a window is activating when its max reaches "
                            "this share of the neuron's max.")
    ] = 0.2,
    augmenter: Annotated[
        str,
        typer.Option(help="N2G augmenter: causal (the studied model), none, or a fill-mask model."),
    ] = "causal",
    batch_neurons: Annotated[
        int,
        typer.Option(help="Neurons of a layer built together (speed only; raise it on a GPU)."),
    ] = 1,
    max_minutes: Annotated[
        float | None,
        typer.Option(help="Start no new batch after this many minutes; the report covers what "
                     "finished (layers are interleaved, so they stay balanced). Re-run to go on."),
    ] = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Discard earlier results in RUN/eval first.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    executor_name: ExecutorOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    cpus_per_worker: CpusOpt = 1.0,
    gpus_per_worker: GpusOpt = 0.0,
    json_out: JsonOpt = False,
) -> None:
    """Evaluate graphs on held-out top examples (paper §4), with baselines and false firing.

    Per neuron: split its top examples 10/10 (seeded), build on train, predict test; score N2G,
    N2G with the official code's choices, token lookup and 5-gram lookup. Finished neurons are
    saved one by one in RUN/eval/neurons, so a killed run resumes where it stopped. Writes
    RUN/eval/results.json, table.md and f1_by_layer.png. With --executor ray, batches run on
    Ray actors (one model replica each; docs/scale.md); results are the same.
    """
    from neuron2graph.evaluate.report import markdown_table, summary
    from neuron2graph.evaluate.run import evaluate
    from neuron2graph.ids import NeuronId, layer_option

    with open_executor(executor_name, address, workers, cpus_per_worker,
                       gpus_per_worker) as executor:
        done = evaluate(
            run_dir, layers=layer_option(layers), per_layer=per_layer,
            neurons=NeuronId.parse_list(neurons) if neurons else None, seed=seed, top_k=top_k,
            n_train=n_train, min_firing_examples=min_firing_examples, official=official,
            false_firing=false_firing, improved=improved, protocol=protocol, split=split,
            min_act=min_act, augmenter=augmenter, batch_neurons=batch_neurons,
            max_minutes=max_minutes, device=device, dtype=None if dtype == "auto" else dtype,
            overwrite=overwrite, progress=not quiet and not json_out, executor=executor)
    results, paths, outcome = done.results, done.paths, done.outcome
    if json_out:
        emit_json(summary(results))
        return
    typer.echo(markdown_table(results))
    t = results["timings"]
    typer.echo(
        f"{len(outcome.rows)} neurons ({outcome.computed} evaluated now, {outcome.reused} reused) "
        f"in {t['wall_s']:.0f} s; mean {t['mean_neuron_s']} s per neuron"
        + (f"; {len(outcome.failed)} failed" if outcome.failed else "")
        + (f"; {len(outcome.pending)} pending (time budget)" if outcome.pending else "")
    )
    for name, path in paths.items():
        if path.exists():
            typer.echo(f"{name}: {path}")



@command("compare")
def compare_command(
    runs: Annotated[list[Path], typer.Argument(help="Two or more evaluated runs, e.g. the "
                                                    "neurons, the SAE latents and a random SAE's "
                                                    "latents of one layer.")],
    layer: Annotated[int | None, typer.Option(help="Only the units of this layer.")] = None,
    label: Annotated[list[str] | None, typer.Option(
        "--label", help="Row name per run, in order (default: the run folder's name).")] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the table here (Markdown).")] = None,
    ids: Annotated[bool, typer.Option("--ids/--no-ids",
                                      help="List the evaluated unit ids.")] = True,
    json_out: JsonOpt = False,
) -> None:
    """One table of `n2g eval` results over runs of different unit kinds (docs/sae.md).

    Per run: N2G's firing F1, false firing and Pearson, the token lookup's F1, and the share of
    units a token lookup explains as well as N2G. Runs evaluated under another protocol are
    refused. Reads the runs' eval/results.json only (no model).
    """
    from neuron2graph.evaluate.compare import compare_runs, compare_table
    from neuron2graph.files import write_text_atomic

    doc = compare_runs(runs, labels=label, layer=layer)
    table = compare_table(doc, show_ids=ids)
    if out is not None:
        write_text_atomic(out, table)
    if json_out:
        emit_json(doc)
        return
    typer.echo(table, nl=False)
    if out is not None:
        typer.echo(f"table: {out}")
