"""`n2g train-sae`, `n2g align` and `n2g random-sae` (torch, sparsify and scipy load lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from neuron2graph.cli.app import DeviceOpt, JsonOpt, command, emit_json
from neuron2graph.errors import N2GError


def _model_and_corpus(source: str, corpus: str | None) -> tuple[str, str, int | None, str]:
    """RUN_OR_MODEL -> (model spec, corpus spec, window or None, bos) from a run's manifest."""
    path = Path(source).expanduser()
    if (path / "run.json").is_file():
        from neuron2graph.store import Run

        run = Run.open(path, allow_incomplete=True)
        m = run.manifest
        rec = m.get("record") or {}
        return (str(m.get("model", {}).get("spec")),
                corpus or str(m.get("corpus", {}).get("spec") or "default"),
                rec.get("window"), str(rec.get("bos") or "auto"))
    return source, corpus or "default", None, "auto"


@command("train-sae")
def train_sae_command(
    source: Annotated[str, typer.Argument(help="A run (its model and corpus are used), or a "
                                                "model.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint folder to write.")],
    layers: Annotated[int, typer.Option("--layers", help="The layer to train on.")] = 0,
    site: Annotated[str, typer.Option(help="mlp_out, resid_post or transcoder.")] = "mlp_out",
    expansion: Annotated[int, typer.Option(help="Latents per input dimension.")] = 8,
    k: Annotated[int, typer.Option(help="Active latents per token (TopK).")] = 32,
    tokens: Annotated[int, typer.Option(help="Training tokens.")] = 100_000,
    corpus: Annotated[str | None, typer.Option(help="Corpus spec (default: the run's).")] = None,
    window: Annotated[int | None, typer.Option(help="Tokens per sequence (default: the run's, "
                                                    "else 64).")] = None,
    batch_size: Annotated[int, typer.Option(help="Sequences per step.")] = 8,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default: sparsify's).")] = None,
    seed: Annotated[int, typer.Option(help="Initialisation seed.")] = 0,
    save_every: Annotated[int, typer.Option(help="Checkpoint every this many steps.")] = 50,
    device: DeviceOpt = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a checkpoint trained "
                                            "with other settings.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Train a TopK SAE or transcoder on one layer with sparsify; resumable; reports FVU."""
    model, corpus_spec, run_window, bos = _model_and_corpus(source, corpus)
    from neuron2graph.corpus import iter_documents, iter_windows
    from neuron2graph.models import load_model
    from neuron2graph.sae.train import TrainSpec, train_sae

    spec = TrainSpec(layer=layers, site=site, expansion=expansion, k=k, tokens=tokens,
                     window=window or run_window or 64, batch_size=batch_size, seed=seed,
                     save_every=save_every, lr=lr)
    spec.validate()
    lm = load_model(model, device=device, dtype="fp32")
    windows = iter_windows(iter_documents(corpus_spec), lm.tokenizer, length=spec.window, bos=bos)
    report = train_sae(lm, windows, out, spec, model_spec=model, corpus=corpus_spec,
                       overwrite=overwrite, progress=progress)
    if as_json:
        emit_json(report)
        return
    typer.echo(f"checkpoint  {report['checkpoint']}")
    typer.echo(f"coder       {report['latents']} latents on {report['d_in']} dims, k={k}, "
               f"{site} of layer {layers}")
    typer.echo(f"trained     {report['train_tokens']} tokens, {report['steps']} steps, "
               f"{report['seconds']} s ({report['tokens_per_s']} tokens/s)")
    typer.echo(f"held out    FVU {report['fvu']:.4f}, dead latents {report['dead_share']:.1%} "
               f"(on {report['eval_tokens']} tokens)")


@command("random-sae")
def random_sae_command(
    sae: Annotated[Path, typer.Argument(help="An SAE folder (SAELens or sparsify).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the control SAE.")],
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Write a control SAE: same shape, site and sparsity rule as SAE, random weights."""
    from neuron2graph.sae import load_saes, random_like
    from neuron2graph.sae.export import save_saelens

    coders = load_saes(sae)
    written = []
    for i, coder in enumerate(coders):
        target = out / coder.info.hook_name if len(coders) > 1 else out
        save_saelens(random_like(coder, seed=seed + i), target)
        written.append(str(target))
        if not as_json:
            typer.echo(f"wrote {target}")
    if as_json:
        emit_json({"written": written, "seed": seed})


@command("align")
def align_command(
    sae_a: Annotated[Path, typer.Argument(help="First SAE folder, or a run recorded with "
                                                "--units sae:PATH.")],
    sae_b: Annotated[Path, typer.Argument(help="Second SAE folder, or run.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="JSON file for the matching "
                                             "(default: print only).")] = None,
    layer_a: Annotated[int | None, typer.Option(help="With runs: the first run's layer "
                                                     "(default: its only one).")] = None,
    layer_b: Annotated[int | None, typer.Option(help="With runs: the second run's layer.")
                       ] = None,
    top: Annotated[int, typer.Option(help="Rows to print.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Match latents of two SAEs one-to-one by decoder-direction cosine (Hungarian algorithm).

    Given two runs (or one run twice with two layers), the matching is also stored in both
    runs (RUN/align/<other>-L<layer>.json), and the browser's unit pages link each latent to
    its match."""
    from neuron2graph.sae import load_saes
    from neuron2graph.sae.align import align, align_runs
    from neuron2graph.store.atomic import write_json_atomic

    runs = [(p / "run.json").is_file() for p in (sae_a, sae_b)]
    written: list[Path] = []
    if all(runs):
        result, written = align_runs(sae_a, sae_b, layer_a=layer_a, layer_b=layer_b)
    elif any(runs):
        raise N2GError("pass two runs or two SAE folders, not one of each")
    else:
        if layer_a is not None or layer_b is not None:
            raise N2GError("--layer-a/--layer-b pick layers of runs: with SAE folders, pass "
                           "the hookpoint folders you want")
        result = align(_single(load_saes(sae_a), sae_a), _single(load_saes(sae_b), sae_b))
    if out is not None:
        write_json_atomic(out, result)
    if as_json:
        emit_json({**result, "written": [str(w) for w in written]})
        return
    s = result["summary"]
    typer.echo(f"matched {s['pairs']} pairs: mean cosine {s['mean_cosine']:.3f}, median "
               f"{s['median_cosine']:.3f}, {s['share_above_0.7']:.1%} above 0.7")
    for row in result["pairs"][:top]:
        typer.echo(f"  {row['a']:>6} -> {row['b']:<6} cos {row['cosine']:.3f}")
    for path in written:
        typer.echo(f"stored {path}")


def _single(saes: list[Any], path: Path) -> Any:
    if len(saes) != 1:
        raise N2GError(f"{path} holds {len(saes)} coders: pass one hookpoint folder")
    return saes[0]
