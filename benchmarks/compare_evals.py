"""Compare two `n2g eval` results on the same neurons and splits (e.g. fp32 vs bf16 builds).

    python benchmarks/compare_evals.py RUN_A RUN_B [--method n2g]

Pairs the neurons both evaluated (same id, same train/test windows: checked), and prints per
layer and overall the mean firing F1 and Pearson of each, the paired difference with a seeded
bootstrap 95% interval over neurons, how many neurons changed F1 at all, and the build seconds
per neuron of each. Undefined values (no firing token predicted or real) are left out pairwise.
Everything printed is read from the two results.json files; nothing is assumed.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path
from typing import Any


def _load(run: Path) -> dict[str, dict[str, Any]]:
    doc = json.loads((run / "eval" / "results.json").read_text(encoding="utf-8"))
    return {n["id"]: n for n in doc["neurons"]}


def _interval(diffs: list[float], rounds: int = 2000) -> tuple[float, float]:
    rng = random.Random(0)
    means = sorted(statistics.fmean(rng.choices(diffs, k=len(diffs))) for _ in range(rounds))
    return means[int(0.025 * rounds)], means[int(0.975 * rounds) - 1]


def _row(label: str, pairs: list[tuple[dict[str, Any], dict[str, Any]]], key: str) -> str:
    vals = [(a[key], b[key]) for a, b in pairs if a.get(key) is not None
            and b.get(key) is not None]
    if not vals:
        return f"{label:>6} {'n/a':>6}"
    diffs = [b - a for a, b in vals]
    lo, hi = _interval(diffs)
    changed = sum(abs(d) > 1e-9 for d in diffs)
    return (f"{label:>6} {len(vals):6d} {statistics.fmean(a for a, _ in vals):7.3f} "
            f"{statistics.fmean(b for _, b in vals):7.3f} {statistics.fmean(diffs):+8.3f} "
            f"[{lo:+.3f}, {hi:+.3f}] {changed:8d}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_a", type=Path)
    ap.add_argument("run_b", type=Path)
    ap.add_argument("--method", default="n2g")
    args = ap.parse_args()
    a, b = _load(args.run_a), _load(args.run_b)
    common = sorted(set(a) & set(b), key=lambda i: (a[i]["layer"], a[i]["neuron"]))
    for nid in common:
        if a[nid]["test_windows"] != b[nid]["test_windows"]:
            raise SystemExit(f"{nid}: the two runs split its examples differently; compare "
                             "evals made with the same --seed and --top-k")
    ok = [i for i in common if args.method in a[i]["methods"] and args.method in b[i]["methods"]]
    print(f"{len(ok)} neurons in both ({len(a)} in A, {len(b)} in B); method {args.method}; "
          f"A = {args.run_a}, B = {args.run_b}")
    layers = sorted({a[i]["layer"] for i in ok})
    for key in ("f1_firing", "pearson"):
        print(f"\n{key}: mean A, mean B, B - A with a bootstrap 95% interval over neurons, "
              "neurons whose value changed")
        print(f"{'layer':>6} {'n':>6} {'A':>7} {'B':>7} {'B - A':>8} {'interval':>17} "
              f"{'changed':>8}")
        for layer in layers:
            pairs = [(a[i]["methods"][args.method], b[i]["methods"][args.method])
                     for i in ok if a[i]["layer"] == layer]
            print(_row(str(layer), pairs, key))
        print(_row("all", [(a[i]["methods"][args.method], b[i]["methods"][args.method])
                           for i in ok], key))
    build = [(a[i]["methods"][args.method].get("build_s"), b[i]["methods"][args.method].get(
        "build_s")) for i in ok]
    build = [(x, y) for x, y in build if x and y]
    if build:
        sa, sb = statistics.fmean(x for x, _ in build), statistics.fmean(y for _, y in build)
        print(f"\nbuild seconds per neuron (as timed by each eval, under its own machine load): "
              f"A {sa:.2f}, B {sb:.2f} (A/B {sa / sb:.2f}x)")


if __name__ == "__main__":
    main()
