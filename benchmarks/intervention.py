"""Intervention scorer on a real run: each unit's own explanation against a control.

For every chosen unit of RUN (which holds explanations of `--explainer`, e.g. after
`n2g explain RUN --explainer tokens`), steer the unit (strength x a_max) and score (a) its own
explanation and (b) the explanation of another unit of the same layer (the next one in the
list: a control that says what AUROC an unrelated explanation gets). Prints per layer the mean
AUROC and shift of both with n, the mean KL of steering, and seconds per unit (steering and
scoring; model load excluded). Everything printed is measured in this run.

    python benchmarks/intervention.py RUN --layers 0,10 --per-layer 5 [--explainer tokens]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from neuron2graph.explain.examples import ExampleConfig
from neuron2graph.explain.pipeline import Graphs, load_examples, select_units
from neuron2graph.explain.scorers.intervention import InterventionScorer
from neuron2graph.explain.storage import explanation_file, read_json
from neuron2graph.ids import parse_layers
from neuron2graph.store.run import Run


def _mean(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} (n={len(values)})" if values else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--layers", default=None)
    ap.add_argument("--per-layer", type=int, default=5)
    ap.add_argument("--explainer", default="tokens")
    ap.add_argument("--strength", type=float, default=4.0)
    args = ap.parse_args()
    run = Run.open(args.run)
    cfg = ExampleConfig()
    sel = select_units(run, cfg, layers=parse_layers(args.layers) if args.layers else None,
                       per_layer=args.per_layer)
    t0 = time.perf_counter()
    lm, source = Graphs(run, device="cpu").loaded()
    print(f"{len(sel.selected)} units; model load {time.perf_counter() - t0:.1f} s; "
          f"strength {args.strength} x a_max; explainer {args.explainer}")
    scorer = InterventionScorer(lm, source, strength=args.strength)
    by_layer: dict[int, list[tuple[str, str]]] = {}
    for nid in sel.selected:
        data = read_json(explanation_file(run.path, args.explainer, nid))
        if isinstance(data, dict) and data.get("text"):
            by_layer.setdefault(nid.layer, []).append((str(nid), data["text"]))
    for layer, units in sorted(by_layer.items()):
        own_a, own_s, ctl_a, ctl_s, kls, secs = [], [], [], [], [], []
        for i, (unit, text) in enumerate(units):
            other = units[(i + 1) % len(units)][1]
            ex = load_examples(run, sel.selected[[str(n) for n in sel.selected].index(unit)],
                               cfg)
            t1 = time.perf_counter()
            own = scorer.score(ex, text)
            ctl = scorer.score(ex, other)
            secs.append(time.perf_counter() - t1)
            kls.append(own["kl"])
            for out, a, s in ((own, own_a, own_s), (ctl, ctl_a, ctl_s)):
                if out["auroc"] is not None:
                    a.append(out["auroc"])
                    s.append(out["shift"])
            print(f"  {unit}: own {own['auroc']}, control {ctl['auroc']}, kl {own['kl']:.3f}, "
                  f"promoted {own.get('promoted')}; {text[:70]!r}")
        print(f"layer {layer}: AUROC own {_mean(own_a)} vs control {_mean(ctl_a)}; shift own "
              f"{_mean(own_s)} vs control {_mean(ctl_s)} nats; KL {_mean(kls)}; "
              f"{statistics.mean(secs):.1f} s per unit")


if __name__ == "__main__":
    main()
