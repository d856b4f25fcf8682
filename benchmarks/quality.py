"""N2G quality ablation on the all-activation-levels protocol (docs/results.md, issue 15).

For `--per-layer` alive neurons of each of `--layers` (seeded draw, as `n2g eval`), every neuron's
windows are split train / validation / test across activation levels (evaluate/levels.py). Graphs
are built once per *build variant* on the train split with the real model:

- `aug10`: the paper's method as `n2g eval` runs it (10 strongest train windows, causal
  augmentation);
- `noaug10`: the same without augmentation; `noaug20` / `aug20`: 20 strongest train windows.

Every *prediction variant* is then scored model-free on validation AND test windows (same windows
for every variant): the paper's search, calibration over all train windows (negatives
included) without and with back-off, each on each build variant, plus the token and 5-gram
lookups fitted on all train windows. The report then picks the vote / min-count of the calibrated
variants per layer band on the validation windows only, reports test with those frozen, and prints
the family (build + back-off) and bands to freeze as `ImproveConfig`'s defaults.

    python benchmarks/quality.py RUN --layers 0,5,10,15,20,25,29 --per-layer 8 --out OUT \\
        --builds aug10,noaug10,noaug20

Graphs and timings are cached in OUT, so the scoring can be re-run without the model. Everything
printed is measured here.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from neuron2graph.evaluate.baselines import NgramLookup, TokenLookup
from neuron2graph.evaluate.levels import levels_split, levels_train_set, score_levels
from neuron2graph.evaluate.protocol import EvalConfig, select_neurons
from neuron2graph.ids import NeuronId
from neuron2graph.n2g.calibrate import CalibrateConfig, calibrate, predict_calibrated
from neuron2graph.n2g.graph import NeuronGraph
from neuron2graph.store.run import Run

BANDS = {"0": (0, 0), "5-10": (5, 10), "15-20": (15, 20), "25-29": (25, 29)}
VOTES = (0.3, 0.4, 0.5, 0.6, 0.7)
MIN_COUNTS = (1, 2, 3)


def band_of(layer: int) -> str:
    for name, (lo, hi) in BANDS.items():
        if lo <= layer <= hi:
            return name
    return f"{layer}"


def build_variants(run: Run, nids: list[NeuronId], cfg: EvalConfig, builds: list[str],
                   out: Path) -> None:
    from neuron2graph.evaluate.builder import load_run_model
    from neuron2graph.evaluate.stage import quiet_libraries
    from neuron2graph.n2g.pipeline import N2GConfig, NeuronRequest, build_graphs
    from neuron2graph.units import source_for_run

    quiet_libraries()
    lm = load_run_model(run)
    source = source_for_run(run, lm)
    timing_file = out / "timings.json"
    timings: dict[str, Any] = json.loads(timing_file.read_text()) if timing_file.exists() else {}
    for build in builds:
        aug, n = build[:-2] if build[-2:].isdigit() else build, int(build[-2:])
        n2g = N2GConfig(augmenter="causal" if aug == "aug" else None)
        by_layer: dict[int, list[NeuronId]] = {}
        for nid in nids:
            if not (out / build / f"{nid.layer}_{nid.neuron}.json").exists():
                by_layer.setdefault(nid.layer, []).append(nid)
        for layer, todo in sorted(by_layer.items()):
            reqs = []
            for nid in todo:
                ts = levels_train_set(run, nid, cfg)
                ex = (ts.examples + ts.more)[:n]
                acts = ((ts.acts or []) + ts.more_acts)[:n]
                reqs.append(NeuronRequest(nid.layer, nid.neuron, ex, ts.a_max, acts=acts))
            t0, c0 = time.perf_counter(), time.process_time()
            results = build_graphs(lm, reqs, n2g, source=source)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            for nid, res in zip(todo, results, strict=True):
                res.graph.save(out / build / f"{nid.layer}_{nid.neuron}.json")
            timings.setdefault(build, {}).setdefault(str(layer), []).append(
                {"neurons": len(todo), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2)})
            timing_file.write_text(json.dumps(timings, indent=1))
            print(f"built {build} layer {layer}: {len(todo)} neurons in {wall:.1f} s "
                  f"({wall / len(todo):.1f} s each, cpu {cpu / len(todo):.1f} s)", flush=True)


def _graph_fn(graph: NeuronGraph, search: str) -> Callable[[Any], list[float]]:
    return lambda ex: list(graph.predict(ex.tokens, search=search))  # type: ignore[arg-type]


def _cal_fn(graph: NeuronGraph, cfg: CalibrateConfig) -> Callable[[Any], list[float]]:
    return lambda ex: predict_calibrated(graph, ex.tokens, cfg)


def score_neuron(run: Run, nid: NeuronId, cfg: EvalConfig, builds: list[str],
                 out: Path) -> dict[str, dict[str, Any]]:
    """Rows for val and test: every prediction variant of this neuron."""
    split = levels_split(run, nid, cfg)
    a_max = run.a_max(nid)
    train_ids = [list(ex.token_ids) for ex in split.train]
    train_acts = [[float(a) / a_max for a in ex.acts] for ex in split.train]
    windows = [(list(ex.tokens), acts) for ex, acts in zip(split.train, train_acts, strict=True)]
    token = TokenLookup.fit(train_ids, train_acts)
    gram = NgramLookup.fit(train_ids, train_acts, n=5)
    preds: dict[str, Callable[[Any], list[float]]] = {
        "token": lambda ex: token.predict(ex.token_ids),
        "5gram": lambda ex: gram.predict(ex.token_ids),
    }
    for build in builds:
        file = out / build / f"{nid.layer}_{nid.neuron}.json"
        if not file.exists():
            continue
        preds[f"{build}/paper"] = _graph_fn(NeuronGraph.load(file), "longest")
        for backoff in (False, True):
            g = NeuronGraph.load(file)
            calibrate(g, windows, CalibrateConfig(backoff=backoff))
            tag = "backoff" if backoff else "calib"
            for vote in VOTES:
                for mc in MIN_COUNTS:
                    c = CalibrateConfig(backoff=backoff, min_count=mc, vote=vote)
                    preds[f"{build}/{tag}/v{vote}/m{mc}"] = _cal_fn(g, c)
    fired_in_train = {tok for ex, acts in windows for tok, a in zip(ex, acts, strict=True)
                      if a >= cfg.threshold}
    rows = {}
    for which in ("val", "test"):
        c = EvalConfig(protocol="levels", split=which, seed=cfg.seed, min_act=cfg.min_act)
        rows[which] = score_levels(run, nid, c, preds, split)
    for build in builds:
        file = out / build / f"{nid.layer}_{nid.neuron}.json"
        if file.exists():
            rows["test"].setdefault("misses", {})[build] = misses(
                NeuronGraph.load(file), split.test, a_max, cfg.threshold, fired_in_train)
    return rows


def misses(graph: NeuronGraph, held: list[Any], a_max: float, thr: float,
           fired_in_train: set[str]) -> dict[str, int]:
    """Why the paper's graph misses held-out firings, and where it fires wrongly.

    `token_unseen`: the firing token is no activating node of the graph; of those,
    `never_fired_in_train` never fires in any train window (no method fitted on train can know
    it from that token), the rest fire somewhere in train but not in the graph's examples."""
    out = {"firing": 0, "hit": 0, "token_unseen": 0, "never_fired_in_train": 0,
           "no_full_path": 0, "value_low": 0, "false_pos": 0, "quiet": 0}
    roots = graph.root.children
    for ex in held:
        pred = graph.predict(ex.tokens, search="longest")
        for i, (tok, a) in enumerate(zip(ex.tokens, ex.acts, strict=True)):
            real = float(a) / a_max
            if real >= thr:
                out["firing"] += 1
                if pred[i] >= thr:
                    out["hit"] += 1
                elif graph.key(tok) not in roots:
                    out["token_unseen"] += 1
                    out["never_fired_in_train"] += int(tok not in fired_in_train)
                elif graph.match(ex.tokens, i) is None:
                    out["no_full_path"] += 1
                else:
                    out["value_low"] += 1
            else:
                out["quiet"] += 1
                out["false_pos"] += int(pred[i] >= thr)
    return out


def _mean(vals: list[float | None]) -> float | None:
    v = [x for x in vals if x is not None]
    return sum(v) / len(v) if v else None


def summarise(rows: list[dict[str, Any]], method: str, layers: list[int] | None = None,
              ) -> dict[str, float | None]:
    sel = [r for r in rows if layers is None or r["layer"] in layers]
    ms = [r["methods"][method] for r in sel if method in r["methods"]]
    return {
        "n": len(ms),
        "f1": _mean([m["f1_firing"] for m in ms]),
        "p": _mean([m["precision_firing"] for m in ms]),
        "r": _mean([m["recall_firing"] for m in ms]),
        "pearson": _mean([m["pearson"] for m in ms]),
        "ff": _mean([m["false_firing"]["rate"] for m in ms]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--layers", default="0,5,10,15,20,25,29")
    ap.add_argument("--per-layer", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--builds", default="aug10,noaug10,noaug20")
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-build", action="store_true", help="score cached graphs only")
    args = ap.parse_args()
    run = Run.open(args.run)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = EvalConfig(protocol="levels", seed=args.seed)
    layers = [int(x) for x in args.layers.split(",")]
    sel = select_neurons(run, cfg, layers=layers, per_layer=args.per_layer)
    nids = sel.selected
    print(f"{len(nids)} neurons ({len(sel.excluded)} excluded); run {run.path}, "
          f"{run.manifest.get('tokens')} tokens", flush=True)
    builds = args.builds.split(",")
    if not args.no_build:
        build_variants(run, nids, cfg, builds, out)
    t0 = time.perf_counter()
    all_rows: dict[str, list[dict[str, Any]]] = {"val": [], "test": []}
    for nid in nids:
        r = score_neuron(run, nid, cfg, builds, out)
        for k in all_rows:
            all_rows[k].append(r[k])
    print(f"scored in {time.perf_counter() - t0:.0f} s", flush=True)
    (out / "rows.json").write_text(json.dumps(all_rows))
    report(all_rows, layers, out)


def report(all_rows: dict[str, list[dict[str, Any]]], layers: list[int], out: Path) -> None:
    """Tune calibrated variants per band on val; print val and test tables of the variants."""
    val, test = all_rows["val"], all_rows["test"]
    methods = list(val[0]["methods"]) if val else []
    bands: dict[str, list[int]] = {}
    for layer in layers:
        bands.setdefault(band_of(layer), []).append(layer)
    # Families: build/tag; their settings (vote, min count) are chosen per band on val.
    families = sorted({m.rsplit("/v", 1)[0] for m in methods if "/v" in m})
    chosen: dict[str, dict[str, str]] = {}
    for fam in families:
        for b, ls in bands.items():
            best = max((m for m in methods if m.startswith(fam + "/v")),
                       key=lambda m: summarise(val, m, ls)["f1"] or -1)
            chosen.setdefault(fam, {})[b] = best
    fixed = [m for m in methods if "/v" not in m]
    default = {fam: f"{fam}/v0.5/m2" for fam in families}
    result: dict[str, Any] = {"chosen": chosen, "tables": {}}
    for which, rows in (("val", val), ("test", test)):
        table: dict[str, dict[str, Any]] = {}
        for m in fixed:
            table[m] = {b: summarise(rows, m, ls) for b, ls in bands.items()}
            table[m]["all"] = summarise(rows, m)
        for fam in families:
            table[f"{fam} (v0.5,m2)"] = {b: summarise(rows, default[fam], ls)
                                         for b, ls in bands.items()}
            table[f"{fam} (v0.5,m2)"]["all"] = summarise(rows, default[fam])
            tuned = {b: summarise(rows, chosen[fam][b], ls) for b, ls in bands.items()}
            tuned["all"] = _pool(rows, chosen[fam], bands)
            table[f"{fam} (tuned on val)"] = tuned
        result["tables"][which] = table
        print(f"\n== {which} == F1 / false firing % by band (n neurons)")
        print("| method | " + " | ".join([*bands, "all"]) + " |")
        for name, cells in table.items():
            txt = []
            for key, s in cells.items():
                f1 = "n/a" if s["f1"] is None else f"{s['f1']:.2f}"
                ff = "n/a" if s["ff"] is None else f"{100 * s['ff']:.2f}%"
                txt.append(f"{f1} / {ff}" + (f" (n={s['n']})" if key == "all" else ""))
            print(f"| {name} | " + " | ".join(txt) + " |")
    print("\nchosen on val:", json.dumps(chosen, indent=1))
    frozen = freeze(val, chosen, bands)
    if frozen:
        result["frozen"] = frozen
        print("\nimproved-method defaults chosen on val (family with the best pooled val F1, its "
              f"per-band settings): {json.dumps(frozen)}")
    if frozen:
        levels = by_level(test, fixed, chosen[frozen["family"]], frozen["family"], bands)
        result["by_level_test"] = levels
        print("\n== test == Pearson by activation level (mean over neurons; weak/mid/strong "
              "thirds of the activating bins, quiet = random text below min_act)")
        print("| method | all | weak | mid | strong | quiet |")
        for name, cells in levels.items():
            txt = ["n/a" if v is None else f"{v:.2f}" for v in cells.values()]
            print(f"| {name} | " + " | ".join(txt) + " |")
    for build in sorted({b for r in test for b in r.get("misses", {})}):
        print(f"\nwhy {build}/paper misses held-out test firings (token counts):")
        for b, ls in bands.items():
            tot: dict[str, int] = {}
            for r in test:
                if r["layer"] in ls and build in r.get("misses", {}):
                    for k, v in r["misses"][build].items():
                        tot[k] = tot.get(k, 0) + v
            print(f"  band {b}: {tot}")
    (out / "report.json").write_text(json.dumps(result, indent=1))


def freeze(val: list[dict[str, Any]], chosen: dict[str, dict[str, str]],
           bands: dict[str, list[int]]) -> dict[str, Any] | None:
    """The settings to freeze as `ImproveConfig`'s defaults, chosen on validation windows only.

    Among the calibrated families with back-off (the improved method predicts with back-off), the
    one whose tuned bands give the best pooled validation F1; its bands become
    `ImproveConfig.bands` entries (first layer of the band, vote, min count)."""
    fams = [f for f in chosen if f.endswith("/backoff")]
    if not fams:
        return None
    best = max(fams, key=lambda f: _pool(val, chosen[f], bands)["f1"] or -1)
    build = best.split("/")[0]
    out_bands = []
    for b, ls in sorted(bands.items(), key=lambda kv: min(kv[1])):
        _, v, m = chosen[best][b].rsplit("/", 2)
        out_bands.append([BANDS[b][0] if b in BANDS else min(ls), float(v[1:]), int(m[1:])])
    return {"family": best, "augment": build.startswith("aug"),
            "max_examples": int(build[-2:]), "bands": out_bands,
            "val_f1": _pool(val, chosen[best], bands)["f1"]}


def by_level(rows: list[dict[str, Any]], fixed: list[str], chosen: dict[str, str],
             family: str, bands: dict[str, list[int]]) -> dict[str, dict[str, float | None]]:
    """Mean Pearson per activation level for the fixed variants and the tuned family."""
    out: dict[str, dict[str, float | None]] = {}
    keys = ("pearson_weak", "pearson_mid", "pearson_strong", "pearson_quiet")
    for name in [*fixed, f"{family} (tuned on val)"]:
        ms = []
        for r in rows:
            m = chosen.get(band_of(r["layer"]), "") if name.endswith("(tuned on val)") else name
            if m in r["methods"]:
                ms.append(r["methods"][m])
        cells = {"all": _mean([m["pearson"] for m in ms])}
        cells.update({k.split("_")[1]: _mean([m["by_level"][k] for m in ms]) for k in keys})
        out[name] = cells
    return out


def _pool(rows: list[dict[str, Any]], chosen: dict[str, str],
          bands: dict[str, list[int]]) -> dict[str, float | None]:
    """Overall summary when each band uses its own chosen variant."""
    merged = []
    for b, ls in bands.items():
        for r in rows:
            if r["layer"] in ls:
                merged.append({"layer": r["layer"], "methods": {"x": r["methods"][chosen[b]]}})
    return summarise(merged, "x")


if __name__ == "__main__":
    main()
