"""Seed 003's measurements on our units: scorer agreement, train sampling, SAE vs neurons.

Three small tables (issue 13), every figure measured in this run and printed with its n:

(a) **Correlation between scorers across units**: for every unit of every group (train mode
    `mix`), the predictors' (N2G graph, token lookup) detection and fuzzing AUROC against their
    simulation r, and the MiniLM embedding AUROC of the LLM-free sentences (`tokens`, `graph`
    explainers) against the detection AUROC of the predictor they were written from.
(b) **Top-only vs quantile vs mixed train samples**: the first run's units explained three
    times (`tokens`, `graph`, and the graph and token lookup as predictors), each from train
    contexts drawn with `--train top|quantiles|mix`, all scored on **the same** scoring contexts
    (the `mix` draw's test, negatives and hard negatives: the test contexts do not depend on the
    mode, the hard negatives do, through the trigger tokens, so they are fixed to one draw).
(c) **Trained SAE latents vs neurons vs random-weight latents**: the same table for each run
    (recorded on the same tokens), train mode `mix`.

Judge-based scorers (detection/fuzzing/simulation of sentences by an LLM, surprisal) are not
run here: with the in-process 135M model they cost minutes per unit on a CPU (docs/explain.md).
`--intervention N` adds the intervention scorer on the `tokens` sentence of the first N units
of each group (about 30-55 s per unit at layer 0 on a loaded 2-core CPU).

    python benchmarks/seed003.py neurons=RUN_N latents=RUN_L random=RUN_R --per-group 8 \
        [--augmenter none|causal] [--intervention 0] [--json out.json]

Library functions only (explain/examples, explain/scoring, explain/explainers, n2g pipeline).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from neuron2graph.explain.compare import correlation_rows, flatten, markdown, mean_rows
from neuron2graph.explain.examples import ExampleConfig, UnitExamples, draw_examples
from neuron2graph.explain.explainers.base import Explanation, UnitInput
from neuron2graph.explain.explainers.graph import GraphExplainer, TokensExplainer
from neuron2graph.explain.pipeline import Graphs, select_units
from neuron2graph.explain.scoring import Scorers, score_unit
from neuron2graph.ids import NeuronId
from neuron2graph.store.run import Run

MODES = ("top", "quantiles", "mix")
COLUMNS = ("graph.detection.auroc", "graph.fuzz.auroc", "graph.simulation.pearson",
           "token.detection.auroc", "token.fuzz.auroc", "token.simulation.pearson",
           "sentence:graph.embedding.auroc", "sentence:tokens.embedding.auroc",
           "sentence:tokens.intervention.auroc")
SHORT = ("graph det", "graph fuzz", "graph sim r", "token det", "token fuzz", "token sim r",
         "emb(graph sent.)", "emb(tokens sent.)", "interv.(tokens sent.)")
PAIRS = (("graph.detection.auroc", "graph.simulation.pearson"),
         ("graph.fuzz.auroc", "graph.simulation.pearson"),
         ("token.detection.auroc", "token.simulation.pearson"),
         ("token.fuzz.auroc", "token.simulation.pearson"),
         ("graph.detection.auroc", "graph.fuzz.auroc"),
         ("sentence:tokens.embedding.auroc", "token.detection.auroc"),
         ("sentence:graph.embedding.auroc", "graph.detection.auroc"),
         ("sentence:tokens.intervention.auroc", "token.detection.auroc"))


def build_graphs(lm: Any, source: Any, units: list[tuple[NeuronId, UnitExamples]],
                 augmenter: str | None) -> dict[NeuronId, Any]:
    """N2G graphs on each unit's train contexts (not saved: several train modes per unit)."""
    from neuron2graph.evaluate.builder import n2g_config
    from neuron2graph.n2g.pipeline import NeuronRequest
    from neuron2graph.n2g.pipeline import build_graphs as build

    reqs = [NeuronRequest(layer=nid.layer, neuron=nid.neuron,
                          examples=[c.token_ids for c in ex.train], a_max=ex.a_max,
                          acts=[c.acts for c in ex.train]) for nid, ex in units]
    results = build(lm, reqs, n2g_config(augmenter=augmenter), source=source)
    return {nid: r.graph for (nid, _), r in zip(units, results, strict=True)}


def explain(ex: UnitExamples, graph: Any) -> list[Explanation]:
    unit = [UnitInput(ex, graph)]
    return [*TokensExplainer().explain(unit), *GraphExplainer().explain(unit)]


def run_group(name: str, path: Path, args: argparse.Namespace, modes: tuple[str, ...],
              timing: dict[str, float]) -> list[dict[str, Any]]:
    run = Run.open(path)
    base = ExampleConfig()
    sel = select_units(run, base, layers=[args.layer], per_layer=args.per_group)
    units = sel.selected
    print(f"[{name}] {path}: units {', '.join(map(str, units))}", flush=True)
    scoring = {nid: draw_examples(run, nid, base) for nid in units}
    t0 = time.perf_counter()
    lm, source = Graphs(run, device="cpu").loaded()
    timing[f"{name}: model load"] = time.perf_counter() - t0
    steer = None
    if args.intervention:
        from neuron2graph.explain.scorers.intervention import InterventionScorer

        steer = InterventionScorer(lm, source)
    rows = []
    for mode in modes:
        cfg = replace(base, train=mode)  # type: ignore[arg-type]
        exs = [(nid, replace(scoring[nid], train=draw_examples(run, nid, cfg).train))
               for nid in units]
        t0 = time.perf_counter()
        graphs = build_graphs(lm, source, exs, None if args.augmenter == "none" else "causal")
        timing[f"{name}/{mode}: graphs ({len(exs)})"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i, (nid, ex) in enumerate(exs):
            expls = explain(ex, graphs[nid])
            scores = score_unit(ex, graphs[nid], expls, Scorers(("embedding",)), base)
            tokens = scores["methods"].get("sentence:tokens")
            if steer is not None and mode == "mix" and i < args.intervention and tokens:
                # on the tokens sentence only: its cost is the model's forwards
                tokens["intervention"] = steer.score(ex, tokens["text"])
            metrics = flatten(scores)
            metrics["graph.empty"] = float(not graphs[nid].root.children)
            texts = {e.explainer: e.text for e in expls}
            rows.append({"group": name, "mode": mode, "unit": str(nid), "metrics": metrics,
                         "texts": texts, "examples": scores["examples"]})
            print(f"  {name}/{mode} {nid}: " + ", ".join(
                f"{k}={v:.3f}" for k, v in metrics.items() if v is not None and k in COLUMNS)
                + f"; tokens: {texts.get('tokens')!r:.80}", flush=True)
        timing[f"{name}/{mode}: explain+score ({len(exs)})"] = time.perf_counter() - t0
    del lm, source, steer
    gc.collect()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="NAME=RUN_DIR; the first is the neurons run (b)")
    ap.add_argument("--layer", type=int, default=0)
    ap.add_argument("--per-group", type=int, default=8)
    ap.add_argument("--augmenter", choices=("none", "causal"), default="none")
    ap.add_argument("--intervention", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    groups = [(s.split("=", 1)[0], Path(s.split("=", 1)[1])) for s in args.runs]
    print("command: python benchmarks/seed003.py " + " ".join(sys.argv[1:]))
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on "
          f"{os.cpu_count()} cores", flush=True)
    timing: dict[str, float] = {}
    t_all = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for i, (name, path) in enumerate(groups):
        rows += run_group(name, path, args, MODES if i == 0 else ("mix",), timing)
    mix = [r for r in rows if r["mode"] == "mix"]
    names = [g for g, _ in groups]

    print(f"\n(a) Correlation between scorers across units (all groups, train mix, layer "
          f"{args.layer}; n = units where both are defined)\n")
    print(markdown(["x", "y", "n", "Pearson r", "Spearman rho"], correlation_rows(mix, PAIRS)))
    print(f"\n(b) Train sampling, group {names[0]!r}, the same scoring contexts for each mode\n")
    print(markdown(["train", *SHORT, "empty graphs"], mean_rows(
        [r for r in rows if r["group"] == names[0]], "mode", MODES, [*COLUMNS, "graph.empty"])))
    print("\n(c) Groups, train mix\n")
    print(markdown(["group", *SHORT, "empty graphs"],
                   mean_rows(mix, "group", names, [*COLUMNS, "graph.empty"])))
    print("\ntiming (s):")
    for k, v in timing.items():
        print(f"  {k}: {v:.1f}")
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    print(f"total {time.perf_counter() - t_all:.1f} s wall, {cpu.ru_utime + cpu.ru_stime:.1f} "
          f"CPU-s (this process); load average at end: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "timing": timing}, indent=1))


if __name__ == "__main__":
    main()
