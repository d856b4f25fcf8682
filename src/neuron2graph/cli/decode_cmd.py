"""`n2g decode`, `n2g find-neurons`, `n2g clamp`, `n2g compare-models`: weight-based decoding.

`--units` picks what is decoded (neurons, or `sae:PATH` latents) through the unit source.

Torch is imported inside the command bodies only (`n2g --help` stays instant).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from neuron2graph.cli.app import DeviceOpt, DtypeOpt, JsonOpt, ModelOpt, command, emit_json
from neuron2graph.errors import N2GError

LayersOpt = Annotated[
    str | None, typer.Option("--layers", "-l", help="Layers, e.g. 0-3,10 or all (the default).")
]
NeuronChunkOpt = Annotated[
    int, typer.Option("--chunk-size", min=1, help="Neurons per block (bounds memory).")
]
VocabChunkOpt = Annotated[
    int, typer.Option("--vocab-chunk-size", min=1, help="Vocabulary rows per block.")
]
UnitsOpt = Annotated[
    str, typer.Option("--units", help="neurons, or sae:PATH for the latents of a SAELens or "
                      "sparsify folder (docs/sae.md).")
]


def _load(model: str, device: str, dtype: str) -> Any:
    from neuron2graph.models import load_model

    return load_model(model, device=device, dtype=None if dtype == "auto" else dtype)


def _layers(layers: list[int] | None, n_layers: int, source: Any = None) -> list[int]:
    """`--layers` as parsed by `layer_option` (None: every layer that has units), each checked
    against the model and the source."""
    if layers is None:
        return list(range(n_layers)) if source is None else source.layers()
    if layers and layers[-1] >= n_layers:
        raise N2GError(
            f"layer {layers[-1]} is out of range: the model has layers 0..{n_layers - 1}"
        )
    for layer in layers if source is not None else ():
        source.check(layer)
    return layers


def _source(lm: Any, units: str) -> Any:
    from neuron2graph.units import make_source

    return make_source(units, lm)


def _console() -> Any:
    from rich.console import Console

    # markup=False: token pieces such as "[/" or "[b]" must print as they are, not as rich markup.
    return Console(highlight=False, soft_wrap=False, markup=False)


def _fmt(rows: list[dict[str, Any]], n: int = 5) -> str:
    return "  ".join(f"{r['token']!r} {r['logit']:+.2f}" for r in rows[:n])


@command("decode")
def decode_cmd(
    model: ModelOpt = "smollm2-135m",
    layers: LayersOpt = None,
    neurons: Annotated[
        str | None, typer.Option(help="Only these neurons, e.g. 3:41,3:100 (default: all).")
    ] = None,
    top: Annotated[int, typer.Option(min=1, help="Tokens kept per neuron and kind.")] = 10,
    kinds: Annotated[
        str, typer.Option(help="Comma list of promote, suppress, read, read_gate.")
    ] = "promote,suppress,read,read_gate",
    out: Annotated[
        Path | None, typer.Option(help="Run folder: write RUN/decode/*.safetensors + table.")
    ] = None,
    chunk_size: NeuronChunkOpt = 1024,
    vocab_chunk_size: VocabChunkOpt = 16384,
    show: Annotated[int, typer.Option(help="Neurons shown in the table (no --out).")] = 20,
    overwrite: Annotated[
        bool, typer.Option(help="With --out: decode layers again even if already done.")
    ] = False,
    units: UnitsOpt = "neurons",
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Decode units through the LM head: tokens they promote, suppress and read.

    Neurons by default; `--units sae:PATH` decodes SAE latents (write side: the decoder rows
    W_dec; read side: the encoder rows). With --out, whole layers are decoded into a run folder
    (resumable per layer; another --top, --kinds, model or dtype is refused unless --overwrite,
    which discards earlier layers); a run recorded with other units decodes its own units.
    """
    from neuron2graph.decode import KINDS
    from neuron2graph.ids import NeuronId, layer_option

    wanted_layers = layer_option(layers)  # a bad value is refused before the model loads
    kind_list = [k.strip() for k in kinds.split(",") if k.strip()]
    if not kind_list or any(k not in KINDS for k in kind_list):
        raise N2GError(f"bad --kinds {kinds!r}: use a comma list of {', '.join(KINDS)}")
    if out is not None:
        _decode_out(out, model, layers, neurons, top, kind_list, chunk_size, vocab_chunk_size,
                    overwrite, device, dtype, json_out, units)
        return
    lm = _load(model, device, dtype)
    source = _source(lm, units)
    wanted: dict[int, list[int]] | None = None
    if neurons is not None:
        wanted = {}
        for nid in NeuronId.parse_list(neurons):
            source.check(nid.layer, nid.neuron)
            wanted.setdefault(nid.layer, []).append(nid.neuron)
        layer_list = sorted(wanted)
    else:
        layer_list = _layers(wanted_layers, lm.n_layers, source)
    start = time.perf_counter()
    results: list[dict[str, Any]] = []
    from tqdm import tqdm

    from neuron2graph.decode import decode_layer, decode_model
    from neuron2graph.decode.weights import FinalNorm

    norm = FinalNorm(lm)
    layer_iter = (
        decode_model(lm, layer_list, top=top, neuron_chunk=chunk_size,
                     vocab_chunk=vocab_chunk_size, kinds=kind_list, source=source)
        if wanted is None
        else (decode_layer(lm, la, top=top, neurons=wanted[la], norm=norm, kinds=kind_list,
                           neuron_chunk=chunk_size, vocab_chunk=vocab_chunk_size,
                           source=source)
              for la in tqdm(layer_list, desc="decode", unit="layer", leave=False))
    )
    for dec in layer_iter:
        ids = wanted[dec.layer] if wanted is not None else range(dec.n_neurons)
        for row, neuron in enumerate(ids):
            results.append({"layer": dec.layer, "neuron": neuron, **dec.neuron(row, lm.tokenizer)})
    seconds = time.perf_counter() - start
    n_done = (sum(len(v) for v in wanted.values()) if wanted
              else sum(source.n_units(la) for la in layer_list))
    summary = {"model": lm.spec, "units": source.spec, "layers": layer_list,
               "skipped_layers": [], "neurons": n_done,
               "top": top, "seconds": round(seconds, 3), "final_norm": norm.describe()}
    if json_out:
        emit_json({**summary, "results": results})
        return
    from rich.table import Table

    table = Table(title=f"{source.describe()}: decoded tokens (logit per unit activation)")
    shown = [k for k in ("promote", "suppress", "read") if k in kind_list] or kind_list[:1]
    table.add_column(source.noun)
    headers = {"promote": "promotes", "suppress": "suppresses", "read": "reads"}
    for k in shown:
        table.add_column(headers.get(k, k))
    for r in results[:show]:
        table.add_row(str(source.unit_id(r["layer"], r["neuron"]).qualified),
                      *(_fmt(r.get(k, [])) for k in shown))
    _console().print(table)
    if len(results) > show:
        typer.echo(f"... {len(results) - show} more {source.noun}s: use --neurons, --json or "
                   "--out")


def _decode_out(out: Path, model: str, layers: str | None, neurons: str | None, top: int,
                kinds: list[str], chunk_size: int, vocab_chunk_size: int, overwrite: bool,
                device: str, dtype: str, json_out: bool, units: str = "neurons") -> None:
    """`n2g decode --out RUN`: the decode stage (whole layers; --neurons picks their layers).
    The run's own units are decoded; `--units` other than neurons must name them."""
    from neuron2graph.decode.stage import DecodeStageConfig, run
    from neuron2graph.ids import NeuronId, layer_option
    from neuron2graph.store import layout

    if units != "neurons":
        from neuron2graph.store import Run

        if not layout.manifest_file(out).is_file():
            raise N2GError(f"--units {units} with --out {out}: record the latents into a run "
                           f"first (n2g record --units {units} --out RUN), then decode --out RUN")
        have = Run.open(out, allow_incomplete=True).manifest.get("unit_source") or "neurons"
        if str(have) != units:
            raise N2GError(f"{out} holds the units {have}, not {units}: drop --units (a run "
                           "decodes its own units) or pick another --out")

    layer_list: tuple[int, ...] | None = None
    if neurons is not None:
        layer_list = tuple(sorted({n.layer for n in NeuronId.parse_list(neurons)}))
    else:
        wanted = layer_option(layers)
        layer_list = None if wanted is None else tuple(wanted)
    config = DecodeStageConfig(model=model, layers=layer_list, top=top, kinds=tuple(kinds),
                               dtype=None if dtype == "auto" else dtype, device=device,
                               chunk_size=chunk_size, vocab_chunk_size=vocab_chunk_size)
    outcome = run(config, out, overwrite=overwrite)
    done = sorted({n.layer for n in outcome.rows})
    skipped = sorted({n.layer for n in outcome.reused})
    norm = next((r["final_norm"] for r in outcome.rows.values() if "final_norm" in r), None)
    summary = {"model": model, "layers": done, "skipped_layers": skipped,
               "neurons": len(outcome.rows), "top": top, "seconds": round(outcome.wall_s, 3),
               "final_norm": norm, "out": str(out)}
    if json_out:
        emit_json(summary)
        return
    typer.echo(f"decoded {len(outcome.rows)} neurons of {len(done)} layers in "
               f"{outcome.wall_s:.1f} s -> {out}/decode/ and the `decode` table of "
               f"{out}/index.sqlite")
    if skipped:
        typer.echo(f"skipped {len(skipped)} layers already decoded (--overwrite redoes them)")


@command("find-neurons")
def find_neurons_cmd(
    token: Annotated[str, typer.Option(help='One token, e.g. " dog" (mind the space).')],
    model: ModelOpt = "smollm2-135m",
    layers: LayersOpt = None,
    top: Annotated[int, typer.Option(min=1, help="Neurons to list.")] = 20,
    by: Annotated[
        str, typer.Option(help="zscore (token vs the neuron's other logits) or logit (raw).")
    ] = "zscore",
    units: UnitsOpt = "neurons",
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    json_out: JsonOpt = False,
) -> None:
    """The units whose output weights most promote a token (the paper's "dog neuron" search).

    Neurons by default; `--units sae:PATH` ranks SAE latents by their decoder rows."""
    from neuron2graph.decode import find_neurons, single_token_id
    from neuron2graph.ids import layer_option

    wanted = layer_option(layers)  # a bad value is refused before the model loads
    lm = _load(model, device, dtype)
    source = _source(lm, units)
    token_id = single_token_id(lm.tokenizer, token)
    hits = find_neurons(lm, token_id, top=top, layers=_layers(wanted, lm.n_layers, source),
                        by=by, source=source)
    for h in hits:
        h["id"] = source.unit_id(h["layer"], h["neuron"]).qualified
    if json_out:
        emit_json({"model": lm.spec, "units": source.spec, "token": token,
                   "token_id": token_id, "by": by, "neurons": hits})
        return
    from rich.table import Table

    table = Table(title=f"{source.describe()}: {source.noun}s promoting {token!r} "
                  f"(id {token_id}), by {by}")
    for col in (source.noun, "logit", "z", "rank of token", "its top tokens"):
        table.add_column(col)
    for h in hits:
        table.add_row(h["id"], f"{h['logit']:.3f}", f"{h['zscore']:.1f}",
                      str(h["rank"]),
                      "  ".join(repr(t) for t in h["top_tokens"]))
    _console().print(table)


@command("clamp")
def clamp_cmd(
    neuron: Annotated[str, typer.Option(help="The neuron, LAYER:NEURON.")],
    value: Annotated[float, typer.Option(help="Activation forced at every position.")],
    prompt: Annotated[str, typer.Option(help="Text to continue.")],
    model: ModelOpt = "smollm2-135m",
    concept: Annotated[
        list[str] | None,
        typer.Option(help="Concept token (repeatable; default: the neuron's top 5 promoted)."),
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(min=0)] = 20,
    units: UnitsOpt = "neurons",
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Clamp a unit and show how the next-token probabilities and the generation change.

    A neuron is set to VALUE at every position; an SAE latent (`--units sae:PATH`) is steered:
    VALUE * W_dec[latent] is added at the coder's write site at every position."""
    from neuron2graph.decode import clamp_report, neuron_logits, single_token_id
    from neuron2graph.ids import NeuronId

    lm = _load(model, device, dtype)
    source = _source(lm, units)
    nid = NeuronId.parse(neuron, source.site)
    source.check(nid)
    if concept:
        ids = [single_token_id(lm.tokenizer, c) for c in concept]
    else:
        ids = neuron_logits(lm, nid.layer, nid.neuron, source).topk(5).indices.tolist()
    rep = clamp_report(lm, nid.layer, nid.neuron, value, prompt, ids,
                       max_new_tokens=max_new_tokens, source=source)
    nid = source.unit_id(nid.layer, nid.neuron)
    if json_out:
        emit_json({"model": lm.spec, "units": source.spec, "unit": nid.qualified,
                   **rep.to_dict()})
        return
    from rich.table import Table

    con = _console()
    verb = "clamped to" if units == "neurons" else "steered by"
    table = Table(title=f"{source.describe()}: {nid.qualified} {verb} {value:g}, next-token "
                  "probability")
    for col in ("concept", "p (base)", f"p ({verb.split()[0]})", "x"):
        table.add_column(col)
    for c in rep.concepts:
        table.add_row(repr(c.token), f"{c.p_base:.3g}", f"{c.p_clamped:.3g}", f"{c.ratio:.3g}")
    table.add_row("all concepts", f"{rep.concept_mass_base:.3g}",
                  f"{rep.concept_mass_clamped:.3g}", "")
    con.print(table)
    gen = Table(title=f"greedy continuation of {prompt!r}", show_lines=True)
    gen.add_column("base")
    gen.add_column(f"{nid.qualified} {'=' if units == 'neurons' else '+='} {value:g}")
    gen.add_row(rep.text_base, rep.text_clamped)
    con.print(gen)


@command("compare-models")
def compare_models_cmd(
    model: Annotated[
        list[str], typer.Option("--model", "-m", help="Give exactly two: --model A --model B.")
    ],
    layers: LayersOpt = None,
    top: Annotated[int, typer.Option(min=1, help="k of the top-k overlap (top-1 always).")] = 1,
    kind: Annotated[str, typer.Option(help="promote, suppress, read or read_gate.")] = "promote",
    out: Annotated[Path | None, typer.Option(help="Write a bar chart here (PNG).")] = None,
    chunk_size: NeuronChunkOpt = 1024,
    vocab_chunk_size: VocabChunkOpt = 16384,
    device: DeviceOpt = "auto",
    dtype: Annotated[
        list[str] | None,
        typer.Option(help="fp32, fp16, bf16 or auto; give it twice for one per model."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Per layer, the share of neurons whose top decoded token is the same in two models."""
    from neuron2graph.decode import KINDS, compare_models, plot_comparison
    from neuron2graph.decode.compare import check_compatible
    from neuron2graph.ids import layer_option

    wanted = layer_option(layers)
    if len(model) != 2:
        raise N2GError(f"compare-models needs exactly two models, got {len(model)}: pass "
                       "--model A --model B")
    if kind not in KINDS:
        raise N2GError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
    dtypes = dtype or ["auto"]
    if len(dtypes) not in (1, 2):
        raise N2GError(f"give --dtype once or twice (one per model), got {len(dtypes)}")
    a = _load(model[0], device, dtypes[0])
    b = _load(model[1], device, dtypes[-1])
    check_compatible(a, b)
    cmp = compare_models(a, b, _layers(wanted, a.n_layers), top=top, kind=kind,
                         neuron_chunk=chunk_size, vocab_chunk=vocab_chunk_size)
    doc = cmp.to_dict()
    if out is not None:
        doc["plot"] = str(plot_comparison(cmp, out))
    if json_out:
        emit_json(doc)
        return
    from rich.table import Table

    table = Table(title=f"{kind} tokens: {cmp.model_a} vs {cmp.model_b}")
    for col in ("layer", "top-1 agrees", f"top-{top} overlap"):
        table.add_column(col, justify="right")
    for x in cmp.layers:
        table.add_row(str(x.layer), f"{100 * x.top1_agree:.1f}%", f"{100 * x.topk_overlap:.1f}%")
    table.add_row("all", f"{100 * cmp.overall_top1:.1f}%", "")
    _console().print(table)
    if out is not None:
        typer.echo(f"plot: {out}")
