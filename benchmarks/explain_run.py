"""Tables of a scored run: methods per layer, scorer agreement, explanation status and cost.

    .venv/bin/python benchmarks/explain_run.py RUN [--json OUT]

Reads only what `n2g explain` and `n2g score` wrote in RUN/explain/ (scores, explanations), so
the tables of docs/explain.md's real run can be re-printed from the run folder at any time:

1. per layer, every method (the graph, token and 5-gram predictors; each `sentence:<explainer>`)
   with the mean of each scorer's headline metric and its n (`explain/scoring.layer_table`);
2. scorer agreement across units (Pearson and Spearman over units where both are defined), seed
   003's analysis: judged detection and fuzzing against simulation, embedding / surprisal /
   intervention against judged detection, and each sentence against its predictor;
3. per explainer: answers by status and seconds per unit; per scored sentence: seconds per unit.
Every figure printed is computed from the files; nothing is hard-coded.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from neuron2graph.explain.compare import correlation_rows, flatten, markdown
from neuron2graph.explain.scoring import layer_table
from neuron2graph.explain.scoring import markdown as layer_markdown


def load(run: Path) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    scores = [json.loads(p.read_text()) for p in sorted((run / "explain/scores").glob("*.json"))]
    expl: dict[str, list[dict[str, Any]]] = {}
    for folder in sorted((run / "explain/explanations").glob("*")):
        expl[folder.name] = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    return scores, expl


def agreement_pairs(sentences: list[str]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for s in sentences:
        pairs += [(f"{s}.detection.auroc", f"{s}.simulation.pearson"),
                  (f"{s}.fuzz.auroc", f"{s}.simulation.pearson"),
                  (f"{s}.detection.auroc", f"{s}.fuzz.auroc"),
                  (f"{s}.embedding.auroc", f"{s}.detection.auroc"),
                  (f"{s}.surprisal.auroc", f"{s}.detection.auroc"),
                  (f"{s}.intervention.auroc", f"{s}.detection.auroc")]
    if "sentence:graph" in sentences:
        pairs.append(("sentence:graph.detection.auroc", "graph.detection.auroc"))
    for s in sentences:
        pairs.append((f"{s}.detection.auroc", "token.detection.auroc"))
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    scores, expl = load(args.run)
    if not scores:
        raise SystemExit(f"error: {args.run}/explain/scores holds no scored unit: run n2g score")
    print(f"{len(scores)} scored units in {args.run}")
    print("\n(1) Methods per layer (mean over units, n = units with a defined value)")
    print(layer_markdown(layer_table(scores)))

    rows = [{"unit": s["unit"], "metrics": flatten(s)} for s in scores]
    sentences = sorted({m for s in scores for m in s["methods"] if m.startswith("sentence:")})
    corr = correlation_rows(rows, agreement_pairs(sentences))
    print("\n(2) Scorer agreement across units (all layers)")
    print(markdown(["x", "y", "n", "Pearson r", "Spearman rho"], corr))

    print("\n(3) Explanations and cost")
    cost: dict[str, Any] = {}
    for name, items in expl.items():
        status = Counter(e.get("status") for e in items)
        secs = [float(e["seconds"]) for e in items if e.get("seconds")]  # 0: not recorded
        mean = statistics.mean(secs) if secs else None
        cost[f"explain:{name}"] = {"status": dict(status), "seconds_per_unit": mean}
        print(f"  explainer {name}: {dict(status)}; "
              f"{'-' if mean is None else f'{mean:.2f}'} s per unit (n={len(secs)})")
    for s in sentences:
        secs = [float(x["methods"][s]["seconds"]) for x in scores
                if s in x["methods"] and "seconds" in x["methods"][s]]
        mean = statistics.mean(secs) if secs else None
        cost[f"score:{s}"] = {"seconds_per_unit": mean, "n": len(secs)}
        print(f"  scoring {s}: {'-' if mean is None else f'{mean:.1f}'} s per unit "
              f"(n={len(secs)})")
    total_failed: Counter[str] = Counter()
    for x in scores:
        total_failed.update(x.get("failed") or {})
    print(f"  failed calls per scorer (all units): {dict(total_failed) or 'none'}")
    if args.json:
        args.json.write_text(json.dumps({"table": layer_table(scores), "agreement": corr,
                                         "cost": cost, "failed": dict(total_failed)}, indent=1))


if __name__ == "__main__":
    main()
