"""One table over several evaluated runs: neurons vs SAE latents vs a random control.

`n2g eval` scores the units of one run; a comparison puts runs of different unit kinds (the MLP
neurons of a layer, the latents of an SAE at that layer, the latents of a random SAE of the same
shape) side by side. Every number comes from each run's own RUN/eval/results.json, so the runs
must have been evaluated under the same protocol (same split sizes, threshold, seed, false-firing
sample on, same model and corpus); anything else is refused in one line naming the field.

Columns, per run (means over the units where the value is defined, `[n]` = undefined):
- F1: N2G's firing-token F1 on the held-out top examples;
- false firing: N2G's share of non-firing tokens predicted to fire on the run's random sample;
- Pearson: correlation of N2G's predicted and the real normalised activations on the test half;
- token F1: the token-lookup baseline's firing F1 on the same splits;
- token >= N2G: among the units where both F1s are defined, the share whose token-lookup F1 is
  at least N2G's F1 (ties count: a token lookup explains that unit as well as the graph does).

No torch: this reads JSON files only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from neuron2graph.errors import N2GError
from neuron2graph.evaluate.metrics import aggregate
from neuron2graph.evaluate.report import load_results

PROTOCOL_FIELDS = ("k", "n_train", "threshold", "seed", "min_firing_examples", "false_firing")
"""Settings that must agree for the numbers of two runs to be comparable."""


def _f1(row: dict[str, Any], method: str) -> float | None:
    value = (row["methods"].get(method) or {}).get("f1_firing")
    return None if value is None else float(value)


def run_summary(run: Any, results: dict[str, Any], layer: int | None = None,
                label: str | None = None) -> dict[str, Any]:
    """The comparison row of one run (optionally only the units of `layer`)."""
    site = run.unit_site
    rows = [r for r in results["neurons"] if layer is None or int(r["layer"]) == layer]
    n2g = [r["methods"].get("n2g") or {} for r in rows]
    pairs = [(_f1(r, "n2g"), _f1(r, "token")) for r in rows]
    both = [(g, t) for g, t in pairs if g is not None and t is not None]
    as_good = sum(1 for g, t in both if t >= g)
    return {
        "label": label or Path(run.path).name,
        "run": str(run.path),
        "units": run.units,
        "site": site,
        "source": run.manifest.get("unit_source") or run.units,
        "layers": sorted({int(r["layer"]) for r in rows}),
        "n_units": len(rows),
        "ids": [f"{site}/{r['layer']}:{r['neuron']}" for r in rows],
        "f1": aggregate(e.get("f1_firing") for e in n2g).to_json(),
        "false_firing": aggregate((e.get("false_firing") or {}).get("rate")
                                  for e in n2g).to_json(),
        "pearson": aggregate(e.get("pearson") for e in n2g).to_json(),
        "token_f1": aggregate(t for _, t in pairs).to_json(),
        "token_as_good": {"share": as_good / len(both) if both else None,
                          "count": as_good, "n": len(both)},
    }


def _protocol(results: dict[str, Any]) -> dict[str, Any]:
    cfg = results.get("config", {})
    corpus = results.get("corpus") or {}
    model = results.get("model") or {}
    return {**{f: cfg.get(f) for f in PROTOCOL_FIELDS},
            "corpus": corpus.get("spec") if isinstance(corpus, dict) else corpus,
            "model": model.get("spec") if isinstance(model, dict) else model,
            "weights_hash": results.get("weights_hash")}


def compare_runs(paths: Sequence[Path], *, labels: Sequence[str] | None = None,
                 layer: int | None = None) -> dict[str, Any]:
    """The comparison document of evaluated runs (in the order given)."""
    from neuron2graph.store import Run

    if len(paths) < 2:
        raise N2GError(f"compare needs at least two evaluated runs, got {len(paths)}")
    if labels and len(labels) != len(paths):
        raise N2GError(f"got {len(labels)} --label for {len(paths)} runs: give one per run or "
                       "none")
    rows, protocol = [], None
    for i, path in enumerate(paths):
        run = Run.open(Path(path))
        results = load_results(run)
        proto = _protocol(results)
        if protocol is None:
            protocol = proto
        else:
            diff = [k for k in protocol if protocol[k] != proto[k]]
            if diff:
                first = diff[0]
                raise N2GError(
                    f"{path} was evaluated under another protocol than {paths[0]} "
                    f"({', '.join(diff)} differ: {first}={proto[first]!r} vs "
                    f"{protocol[first]!r}): re-run n2g eval with the same settings")
        row = run_summary(run, results, layer, labels[i] if labels else None)
        if not row["n_units"]:
            where = f" at layer {layer}" if layer is not None else ""
            raise N2GError(f"{path} has no evaluated units{where}: run n2g eval on it first")
        rows.append(row)
    return {"layer": layer, "protocol": protocol, "runs": rows}


def _cell(agg: dict[str, Any], percent: bool = False) -> str:
    mean = agg.get("mean")
    text = "n/a" if mean is None else f"{100 * mean:.2f}%" if percent else f"{mean:.2f}"
    if agg.get("n_undefined"):
        text += f" [{agg['n_undefined']}]"
    return text


def compare_table(doc: dict[str, Any], *, show_ids: bool = True) -> str:
    """Markdown: one row per run, then the evaluated unit ids with their site prefix."""
    p = doc["protocol"]
    layer = doc.get("layer")
    lines = [
        f"Units{'' if layer is None else f' of layer {layer}'}, same protocol: top-{p['k']} "
        f"examples split {p['n_train']}/{p['k'] - p['n_train']} (seed {p['seed']}), a token "
        f"fires at a/a_max >= {p['threshold']}; {p['model']} on corpus {p['corpus']}.",
        "",
        "| run | units | n | F1 | false firing | Pearson | token F1 | token >= N2G |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["runs"]:
        share = r["token_as_good"]
        good = ("n/a" if share["share"] is None
                else f"{100 * share['share']:.0f}% ({share['count']}/{share['n']})")
        lines.append(
            f"| {r['label']} | {r['site']} ({r['source']}) | {r['n_units']} | {_cell(r['f1'])} | "
            f"{_cell(r['false_firing'], percent=True)} | {_cell(r['pearson'])} | "
            f"{_cell(r['token_f1'])} | {good} |")
    lines += [
        "",
        "F1, false firing and Pearson are N2G's; token F1 is the token-lookup baseline's firing "
        "F1 on the same splits; token >= N2G is the share of units (both F1s defined) whose "
        "token-lookup F1 is at least N2G's. [n]: units where the value is undefined.",
    ]
    if show_ids:
        lines.append("")
        for r in doc["runs"]:
            lines.append(f"- {r['label']}: {', '.join(r['ids'])}")
    return "\n".join(lines) + "\n"


__all__ = ["PROTOCOL_FIELDS", "compare_runs", "compare_table", "run_summary"]
