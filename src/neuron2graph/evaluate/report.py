"""The evaluation report: results.json, a Markdown table shaped like the paper's Table 1, a plot.

Per layer, each metric is averaged over the neurons where it is defined; the number of neurons
where it is undefined is shown next to the mean (`0.62 [3]`) and kept in results.json, never
replaced by a made-up value. `render_table(run)` is what `n2g report RUN` prints.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from neuron2graph.errors import N2GError
from neuron2graph.evaluate.metrics import METRICS, aggregate, aggregate_rows
from neuron2graph.evaluate.predictors import PREDICTORS
from neuron2graph.evaluate.protocol import EvalConfig, EvalOutcome, Selection
from neuron2graph.evaluate.storage import eval_dir
from neuron2graph.files import write_bytes_atomic, write_json_atomic, write_text_atomic

RESULTS_FORMAT = "neuron2graph/eval"
RESULTS_VERSION = 1


def method_order() -> tuple[str, ...]:
    """Report order: the predictor registry's (evaluate/predictors.py)."""
    return tuple(PREDICTORS)


def _aggregate_methods(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for method in method_order():
        entries = [r["methods"][method] for r in rows if method in r["methods"]]
        if not entries:
            continue
        aggs = {k: v.to_json() for k, v in aggregate_rows(entries, METRICS).items()}
        aggs["false_firing_rate"] = aggregate(
            (e.get("false_firing") or {}).get("rate") for e in entries
        ).to_json()
        out[method] = aggs
    return out


def _mean(values: Any) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return round(sum(vals) / len(vals), 3) if vals else None


def _count_layer(items: Sequence[dict[str, Any]], layer: int) -> int:
    return sum(1 for e in items if int(str(e["neuron"]).split(":")[0]) == layer)


def build_results(
    run: Any,
    selection: Selection,
    cfg: EvalConfig,
    outcome: EvalOutcome,
    request: dict[str, Any],
) -> dict[str, Any]:
    """The whole results document (config, per-layer aggregates, exclusions, timings, rows)."""
    rows = outcome.rows
    layers = sorted({r["layer"] for r in rows} | {n.layer for n in selection.selected}
                    | set(selection.shortfall))
    by_layer: dict[str, Any] = {}
    for layer in layers:
        lrows = [r for r in rows if r["layer"] == layer]
        by_layer[str(layer)] = {
            "n_neurons": len(lrows),
            "n_excluded": _count_layer(selection.excluded, layer),
            "n_failed": _count_layer(outcome.failed, layer),
            "n_pending": sum(1 for n in outcome.pending if int(n.split(":")[0]) == layer),
            "shortfall": selection.shortfall.get(layer, 0),
            "methods": _aggregate_methods(lrows),
            "mean_neuron_s": _mean(r.get("seconds") for r in lrows),
            "mean_neuron_cpu_s": _mean(r.get("cpu_s") for r in lrows),
        }
    build_s: dict[str, float] = {}
    for method in ("n2g", "official"):
        vals = [r["methods"][method]["build_s"] for r in rows
                if "build_s" in r["methods"].get(method, {})]
        if vals:
            build_s[method] = round(sum(vals) / len(vals), 3)
    seconds = [r["seconds"] for r in rows if "seconds" in r]
    cpu = [r["cpu_s"] for r in rows if "cpu_s" in r]
    manifest = run.manifest
    return {
        "format": RESULTS_FORMAT,
        "version": RESULTS_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "run": str(run.path),
        "model": manifest.get("model"),
        "weights_hash": manifest.get("weights_hash"),
        "corpus": manifest.get("corpus"),
        "corpus_tokens": manifest.get("tokens"),
        "config": {**cfg.settings(), **request},
        "aggregate": {
            "layers": by_layer,
            "all": {"n_neurons": len(rows), "methods": _aggregate_methods(rows)},
        },
        "excluded": selection.excluded,
        "failed": outcome.failed,
        "pending": outcome.pending,
        "timings": {
            "wall_s": round(outcome.wall_s, 2),
            "neurons_computed": outcome.computed,
            "neurons_reused": outcome.reused,
            "mean_neuron_s": round(sum(seconds) / len(seconds), 3) if seconds else None,
            "mean_neuron_cpu_s": round(sum(cpu) / len(cpu), 3) if cpu else None,
            "mean_build_s": build_s,
        },
        "neurons": rows,
    }


# ------------------------------------------------------------------------------------ table
def _fmt(agg: dict[str, Any] | None, *, undef: bool = True) -> str:
    if not agg:
        return "–"
    mean = agg.get("mean")
    text = "n/a" if mean is None else f"{mean:.2f}"
    if undef and agg.get("n_undefined"):
        text += f" [{agg['n_undefined']}]"
    return text


def _rows_for(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    layers = results["aggregate"]["layers"]
    out = [(k, layers[k]) for k in sorted(layers, key=int)]
    out.append(("all", results["aggregate"]["all"]))
    return out


def markdown_table(results: dict[str, Any]) -> str:
    """The paper's Table 1 for N2G, then firing F1 (P / R) and false firing for every method."""
    rows = _rows_for(results)
    cfg = results.get("config", {})
    if cfg.get("protocol") == "levels":
        head = (f"All activation levels (N2G, paper method): held-out {cfg.get('split', 'test')} "
                f"windows across activation quantiles (activating: max >= "
                f"{cfg.get('min_act')} a_max) plus random text (seed {cfg.get('seed')}), a token "
                f"fires when a/a_max >= {cfg.get('threshold', 0.5)}.")
    else:
        head = (f"Table 1 (N2G, exact choices): top-{cfg.get('k', 20)} examples split "
                f"{cfg.get('n_train', 10)}/{cfg.get('k', 20) - cfg.get('n_train', 10)} (seed "
                f"{cfg.get('seed')}), a token fires when a/a_max >= {cfg.get('threshold', 0.5)}.")
    lines = [
        head,
        "",
        "| Layer | Neurons | Firing P | Firing R | Firing F1 | Non-firing P | Non-firing R "
        "| Non-firing F1 | Pearson |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, layer in rows:
        m = layer["methods"].get("n2g", {})
        cells = [_fmt(m.get(k)) for k in METRICS]
        lines.append(f"| {name} | {layer['n_neurons']} | " + " | ".join(cells) + " |")
    methods = [m for m in method_order() if any(m in layer["methods"] for _, layer in rows)]
    lines += [
        "",
        "Firing-token F1 (precision / recall) by method, on the same splits:",
        "",
        "| Layer | " + " | ".join(PREDICTORS[m].label for m in methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for name, layer in rows:
        cells = []
        for method in methods:
            m = layer["methods"].get(method)
            if not m:
                cells.append("–")
                continue
            cells.append(
                f"{_fmt(m['f1_firing'])} ({_fmt(m['precision_firing'])} / "
                f"{_fmt(m['recall_firing'])})"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if cfg.get("false_firing", True):
        lines += [
            "",
            "False-firing rate on ordinary text (random corpus windows that are not among the "
            "neuron's top examples; levels protocol: the held-out random windows): share of "
            "non-firing tokens predicted to fire.",
            "",
            "| Layer | " + " | ".join(PREDICTORS[m].label for m in methods) + " |",
            "|---|" + "---|" * len(methods),
        ]
        for name, layer in rows:
            cells = [
                _fmt_rate(layer["methods"].get(m, {}).get("false_firing_rate")) for m in methods
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    n_ex = len(results.get("excluded", []))
    short = {k: v["shortfall"] for k, v in results["aggregate"]["layers"].items()
             if v.get("shortfall")}
    lines += [
        "",
        "[n]: neurons where the value is undefined (e.g. precision when nothing is predicted to "
        "fire, recall when the test half holds no firing token); they are left out of the mean, "
        "never counted as 1.0.",
        f"Excluded neurons: {n_ex} (listed with reasons in results.json)."
        + (f" Layers short of alive neurons: {short}." if short else ""),
    ]
    if results.get("failed"):
        lines.append(f"Failed neurons (build raised; a re-run retries them): "
                     f"{', '.join(f['neuron'] for f in results['failed'])}.")
    if results.get("pending"):
        lines.append(f"Not evaluated (time budget reached): {len(results['pending'])} selected "
                     "neurons; re-run the same command to continue.")
    return "\n".join(lines) + "\n"


def _fmt_rate(agg: dict[str, Any] | None) -> str:
    if not agg or agg.get("mean") is None:
        return "–"
    return f"{100 * agg['mean']:.2f}%"


# ------------------------------------------------------------------------------------- plot
def plot_f1_by_layer(results: dict[str, Any]) -> bytes:
    """PNG: mean firing-token F1 per layer for every method, with ±1 standard error bars."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["neurons"]
    layers = sorted({r["layer"] for r in rows})
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    gaps = [b - a for a, b in itertools.pairwise(layers)]
    offset = 0.05 * (min(gaps) if gaps else 1)
    for method in method_order():
        xs, ys, errs = [], [], []
        for layer in layers:
            vals = [r["methods"][method]["f1_firing"] for r in rows
                    if r["layer"] == layer and method in r["methods"]
                    and r["methods"][method]["f1_firing"] is not None]
            if vals:
                mean = sum(vals) / len(vals)
                var = sum((v - mean) ** 2 for v in vals) / max(1, len(vals) - 1)
                xs.append(layer)
                ys.append(mean)
                errs.append(math.sqrt(var / len(vals)) if len(vals) > 1 else 0.0)
        if not xs:
            continue
        color, marker, line = PREDICTORS[method].style
        # Small horizontal offsets keep the error bars of the methods apart.
        shift = offset * (method_order().index(method) - (len(PREDICTORS) - 1) / 2)
        ax.errorbar([x + shift for x in xs], ys, yerr=errs, color=color, marker=marker,
                    linestyle=line, capsize=3, label=PREDICTORS[method].label)
    counts = {layer: sum(1 for r in rows if r["layer"] == layer) for layer in layers}
    ax.set_xticks(layers, [f"{layer}\n(n={counts[layer]})" for layer in layers])
    ax.set_xlabel("layer (neurons evaluated)")
    ax.set_ylabel("firing-token F1 (mean ± s.e.)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    model = results.get("model")
    name = model.get("spec", model) if isinstance(model, dict) else model
    ax.set_title(f"N2G vs baselines on held-out top examples — {name}", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


# ------------------------------------------------------------------------------------ files
def write_report(run_path: Path, results: dict[str, Any]) -> dict[str, Path]:
    root = eval_dir(run_path)
    paths = {
        "results": root / "results.json",
        "table": root / "table.md",
        "plot": root / "f1_by_layer.png",
    }
    write_json_atomic(paths["results"], results)
    write_text_atomic(paths["table"], markdown_table(results))
    if results["neurons"]:
        write_bytes_atomic(paths["plot"], plot_f1_by_layer(results))
    return paths


def load_results(run: Any) -> dict[str, Any]:
    """RUN/eval/results.json; `run` is a Run or a path."""
    path = eval_dir(Path(getattr(run, "path", run))) / "results.json"
    if not path.is_file():
        raise N2GError(f"no evaluation in {path.parent.parent}: run n2g eval on it first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise N2GError(f"{path} is corrupt: re-run n2g eval to rewrite it") from None
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT:
        raise N2GError(f"{path} is not an n2g eval results file: re-run n2g eval")
    if data.get("version") != RESULTS_VERSION:
        raise N2GError(f"{path} has results version {data.get('version')}: re-run n2g eval")
    return data


def render_table(run: Any) -> str:
    """The Markdown table of a run's evaluation (what `n2g report RUN` prints)."""
    return markdown_table(load_results(run))


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """results.json without the per-neuron rows (what `n2g eval --json` prints)."""
    return {k: v for k, v in results.items() if k != "neurons"}


__all__ = [
    "build_results",
    "load_results",
    "markdown_table",
    "plot_f1_by_layer",
    "render_table",
    "summary",
    "write_report",
]
