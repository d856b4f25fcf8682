"""`n2g record`, `n2g info` and `n2g examples` (torch is imported only inside `record`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from neuron2graph.cli.app import DeviceOpt, DtypeOpt, JsonOpt, ModelOpt, command, emit_json
from neuron2graph.errors import N2GError

RunArg = Annotated[Path, typer.Argument(help="Run directory written by n2g record.")]


@command("record")
def record_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")],
    model: ModelOpt = "smollm2-135m",
    corpus: Annotated[str, typer.Option(help="Corpus spec: default, files, globs, hf:NAME.")] = (
        "default"
    ),
    layers: Annotated[str, typer.Option(help="Layers to record, e.g. 0,1,2, 0-3 or all (every "
                                        "layer of the model).")] = "0-3",
    units: Annotated[
        str, typer.Option(help="Units to record: neurons (MLP neurons), or sae:PATH (a SAELens or "
                       "sparsify folder); see docs/units.md.")
    ] = "neurons",
    max_tokens: Annotated[
        int, typer.Option(help="Stop after this many tokens; 0 reads the whole corpus.")
    ] = 100_000,
    top_k: Annotated[int, typer.Option(help="Top activating windows kept per neuron.")] = 20,
    window: Annotated[int, typer.Option(help="Tokens per window, BOS included.")] = 64,
    batch_size: Annotated[int, typer.Option(help="Windows per forward pass.")] = 32,
    sample: Annotated[int, typer.Option(help="Windows in the uniform random sample.")] = 256,
    seed: Annotated[int, typer.Option(help="Seed of the random sample.")] = 0,
    bos: Annotated[str, typer.Option(help="BOS per window: auto, always or never.")] = "auto",
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a run recorded with other options.")
    ] = False,
    checkpoint_every: Annotated[
        int, typer.Option(help="Also checkpoint every this many batches (0: only every 5 "
                               "minutes, the default).")
    ] = 0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Record top examples, a random sample and statistics of every unit of some layers."""
    from neuron2graph.ids import layer_option
    from neuron2graph.record.config import RecordConfig
    from neuron2graph.record.stage import RecordStageConfig, run

    config = RecordStageConfig(
        model=model, corpus=corpus, layers=tuple(layer_option(layers) or ()), units=units,
        record=RecordConfig(window=window, top_k=top_k, sample=sample, batch_size=batch_size,
                            max_tokens=max_tokens or None, seed=seed, bos=bos,
                            checkpoint_every=checkpoint_every or None),
        dtype=None if dtype == "auto" else dtype, device=device, progress=progress)
    if not run(config, out, overwrite=overwrite):
        typer.echo(f"{out.expanduser()} already holds this recording (same configuration): "
                   "nothing to do", err=True)
    _print_info(out.expanduser(), as_json)


def run_info(path: Path) -> dict[str, Any]:
    """What a run holds: model, corpus, layers, tokens, time, graphs and other stages' tables."""
    from neuron2graph.store import Run
    from neuron2graph.store.db import table_names

    run = Run.open(path)
    m = run.manifest
    conn = run.db()
    try:
        tables = {t: int(conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0])
                  for t in table_names(conn)}
    finally:
        conn.close()
    return {
        "path": str(run.path),
        "model": m.get("model", {}).get("spec"),
        "family": m.get("model", {}).get("family"),
        "weights_hash": m.get("weights_hash"),
        "dtype": m.get("model", {}).get("dtype"),
        "corpus": m.get("corpus", {}).get("spec"),
        "layers": run.layers,
        "n_neurons": run.n_neurons,
        "units": m.get("unit_source") or m.get("units") or "neurons",
        "tokens": m.get("tokens"),
        "windows": m.get("windows"),
        "window_len": run.window_len,
        "top_k": run.top_k,
        "sample_windows": m.get("sample_windows"),
        "elapsed_s": m.get("timings", {}).get("elapsed_s"),
        "tokens_per_s": m.get("timings", {}).get("tokens_per_s"),
        "graphs": tables.get("graphs", 0),
        "tables": tables,
        "created": m.get("created"),
        "finished": m.get("finished"),
        "package_version": m.get("package_version"),
    }


def _print_info(path: Path, as_json: bool) -> None:
    info = run_info(path)
    if as_json:
        emit_json(info)
        return
    typer.echo(f"run       {info['path']}")
    typer.echo(f"model     {info['model']} ({info['family']}, {info['dtype']}, "
               f"weights {info['weights_hash']})")
    typer.echo(f"corpus    {info['corpus']}")
    layers = ",".join(str(x) for x in info["layers"])
    noun = "neurons" if info["units"] == "neurons" else f"latents of {info['units']}"
    typer.echo(f"layers    {layers}  ({info['n_neurons']} {noun} each)")
    if info["tokens"] is None:
        typer.echo("record    none (no n2g record in this run)")
    else:
        typer.echo(f"tokens    {info['tokens']} in {info['windows']} windows of "
                   f"{info['window_len']}; top {info['top_k']} per neuron; sample of "
                   f"{info['sample_windows']} windows")
        typer.echo(f"time      {info['elapsed_s']} s ({info['tokens_per_s']} tokens/s)")
    typer.echo(f"graphs    {info['graphs']} built")
    others = {k: v for k, v in info["tables"].items() if k not in ("neurons", "graphs")}
    if others:
        typer.echo("tables    " + ", ".join(f"{k} ({v} rows)" for k, v in others.items()))


@command("info")
def info_command(run: RunArg, as_json: JsonOpt = False) -> None:
    """Print what a run holds: model, corpus, layers, tokens, time, graphs, other stages."""
    _print_info(run, as_json)


@command("examples")
def examples_command(
    run: RunArg,
    neuron: Annotated[str, typer.Option("--neuron", "-n", help="Neuron id LAYER:NEURON.")],
    top: Annotated[int, typer.Option(help="How many top examples to show.")] = 5,
    sample: Annotated[
        int, typer.Option(help="Also show this many quantile picks from the random sample.")
    ] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Show a neuron's top examples, each token coloured by its activation."""
    from neuron2graph.store import Run

    r = Run.open(run)
    nid = r.check(neuron)
    if top < 1:
        raise N2GError(f"--top {top} is invalid: show at least 1 example")
    examples = r.top_examples(nid, k=top)
    quantiles = r.quantile_examples(nid, sample) if sample > 0 else []
    stats = r.neuron_stats(nid)
    if as_json:
        stats.pop("hist")
        stats.pop("hist_edges")
        emit_json({"neuron": str(nid), "stats": stats,
                   "top": [e.to_json() for e in examples],
                   "quantiles": [e.to_json() for e in quantiles]})
        return
    _print_examples(str(nid), stats, examples, quantiles)


def _colour(act: float, a_max: float) -> str:
    """Background colour: white to red by act / a_max (negative activations: faint blue)."""
    if a_max <= 0:
        return "rgb(255,255,255)"
    x = max(-1.0, min(1.0, act / a_max))
    if x >= 0:
        fade = int(255 * (1 - x))
        return f"rgb(255,{fade},{fade})"
    fade = int(255 * (1 + 0.5 * x))
    return f"rgb({fade},{fade},255)"


def _print_examples(nid: str, stats: dict[str, Any], examples: list[Any],
                    quantiles: list[Any]) -> None:
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False, markup=False, emoji=False)  # "2:100:" is not an emoji
    a_max = float(stats["max_act"])
    console.print(
        f"neuron {nid}: max {a_max:.4g}, density {stats['density']:.3%}, firing rate "
        f"{stats['firing_rate']:.3%} (>= 0.5 max), mean {stats['mean_act']:.4g}"
    )

    def show(title: str, items: list[Any]) -> None:
        for rank, ex in enumerate(items, 1):
            text = Text(f"{title}{rank:>2}  max {ex.max_act:8.4g}  window {ex.window:>7}  ")
            best = max(range(len(ex.acts)), key=lambda i: (ex.acts[i], -i)) if ex.acts else -1
            for i, (tok, act) in enumerate(zip(ex.tokens, ex.acts, strict=True)):
                piece = tok.replace("\n", "\u21b5")
                style = f"black on {_colour(act, a_max)}"
                if i == best:
                    style += " bold underline"
                text.append(piece, style=style)
            console.print(text)

    show("#", examples)
    if quantiles:
        console.print("quantile picks from the random sample (low to high window max):")
        show("q", quantiles)
