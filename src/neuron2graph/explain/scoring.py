"""Score every explanation of a unit, and its graph and lookups, on the same examples.

Methods in a unit's scores file:

- `graph`, `token`, `5gram`: predictors (the N2G graph built on the train contexts, the token
  lookup and the 5-gram lookup fitted on the same contexts), run as classifiers (detection,
  fuzzing) and simulators (simulation);
- `sentence:<explainer>`: each explanation the run holds for the unit, judged by an LLM
  (detection, fuzzing, simulation), embedded (embedding), used as a prefix (surprisal) or
  compared with what steering the unit does to the model's predictions (intervention).

The score stage (`score_stage.py`) runs `score_unit` per unit and keeps the files.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from neuron2graph.errors import N2GError
from neuron2graph.evaluate.baselines import NgramLookup, TokenLookup
from neuron2graph.explain.examples import ExampleConfig, UnitExamples
from neuron2graph.explain.scorers import bench
from neuron2graph.explain.storage import KEYS

JUDGED = ("detection", "fuzz", "simulation")
ALL = ("detection", "fuzz", "simulation", "embedding", "surprisal", "intervention")
COUNTED = (*JUDGED, "intervention")
"""Scorers whose entries carry a `failed` count (summed per unit into `failed`)."""


@dataclass
class Scorers:
    names: tuple[str, ...]
    judge: Any = None
    """A ChatModel for detection, fuzzing and simulation of sentences (None: predictors only)."""
    lm: Any = None
    """A LocalChat whose model/tokenizer compute surprisal (None: no surprisal)."""
    steer: Any = None
    """An `InterventionScorer` over the run's model (None: no intervention score)."""

    def signature(self) -> dict[str, Any]:
        return {"scorers": list(self.names),
                "judge": getattr(self.judge, "name", None),
                "lm": getattr(self.lm, "name", None)}


def check_scorers(names: Sequence[str]) -> tuple[str, ...]:
    bad = [n for n in names if n not in ALL]
    if bad:
        raise N2GError(f"unknown scorer {bad[0]!r}: use any of {','.join(ALL)}")
    return tuple(dict.fromkeys(names))


def predictors(ex: UnitExamples, graph: Any) -> dict[str, bench.Predict]:
    ids = [c.token_ids for c in ex.train]
    norm = [[a / ex.a_max for a in c.acts] for c in ex.train]
    token = TokenLookup.fit(ids, norm)
    gram = NgramLookup.fit(ids, norm, n=5)
    out: dict[str, bench.Predict] = {}
    if graph is not None:
        out["graph"] = lambda c: list(graph.predict(c.tokens))
    out["token"] = lambda c: token.predict(c.token_ids)
    out["5gram"] = lambda c: gram.predict(c.token_ids)
    return out


def score_unit(ex: UnitExamples, graph: Any, explanations: Sequence[Any], sc: Scorers,
               cfg: ExampleConfig) -> dict[str, Any]:
    """Every method's scores on one unit; failed judge calls are counted per scorer."""
    items = bench.fuzz_items(ex, cfg.min_act, cfg.seed)
    methods: dict[str, Any] = {}
    failed: dict[str, int] = {}
    for name, predict in predictors(ex, graph).items():
        full = bench.score_predictor(predict, ex, items, cfg.min_act)
        methods[name] = full  # predictors are cheap: always all three
    without: list[float] | None = None  # surprisal's explanation-free NLL, shared
    for expl in explanations:
        if not expl.text:
            continue
        entry: dict[str, Any] = {"text": expl.text}
        t0 = time.perf_counter()
        if sc.judge is not None:
            if "detection" in sc.names:
                entry["detection"] = bench.detection_sentence(sc.judge, expl.text, ex)
            if "fuzz" in sc.names:
                entry["fuzz"] = bench.fuzz_sentence(sc.judge, expl.text, items)
            if "simulation" in sc.names:
                entry["simulation"] = bench.simulation_sentence(sc.judge, expl.text, ex)
        if "embedding" in sc.names:
            from neuron2graph.explain.scorers.embedding import embedding_score

            entry["embedding"] = embedding_score(expl.text, ex)
        if "surprisal" in sc.names and sc.lm is not None:
            from neuron2graph.explain.scorers.surprisal import baseline, surprisal_score

            if without is None:
                without = baseline(sc.lm.model, sc.lm.tokenizer, ex)
            entry["surprisal"] = surprisal_score(sc.lm.model, sc.lm.tokenizer, expl.text, ex,
                                                 without)
        if "intervention" in sc.names and sc.steer is not None:
            entry["intervention"] = sc.steer.score(ex, expl.text)
        for scorer in COUNTED:
            n = (entry.get(scorer) or {}).get("failed", 0)
            if n:
                failed[scorer] = failed.get(scorer, 0) + n
        entry["seconds"] = round(time.perf_counter() - t0, 3)
        methods[f"sentence:{expl.explainer}"] = entry
    counts = {"test": len(ex.test), "negative": len(ex.negative),
              "hard_negative": len(ex.hard_negative), "fuzz_items": len(items)}
    return {"unit": ex.unit, "a_max": ex.a_max, "examples": counts, "methods": methods,
            "failed": failed}


def layer_table(rows: Sequence[dict[str, Any]]) -> dict[int, dict[str, dict[str, Any]]]:
    """Per layer and method: the mean of each headline metric over units (with its n)."""
    acc: dict[int, dict[str, dict[str, list[float]]]] = {}
    for row in rows:
        layer = int(row["unit"].split(":")[0])
        for method, entry in row["methods"].items():
            cell = acc.setdefault(layer, {}).setdefault(method, {})
            for scorer, metric in KEYS:
                value = (entry.get(scorer) or {}).get(metric)
                if value is not None:
                    cell.setdefault(f"{scorer}.{metric}", []).append(float(value))
    return {layer: {m: {k: {"mean": sum(v) / len(v), "n": len(v)} for k, v in cells.items()}
                    for m, cells in methods.items()} for layer, methods in acc.items()}


def markdown(table: dict[int, dict[str, dict[str, Any]]]) -> str:
    cols = [f"{s}.{m}" for s, m in KEYS]
    lines = []
    for layer in sorted(table):
        lines += [f"\nLayer {layer}\n", "| method | " + " | ".join(cols) + " |",
                  "|---|" + "---|" * len(cols)]
        for method, cells in sorted(table[layer].items()):
            vals = [f"{cells[c]['mean']:.3f} (n={cells[c]['n']})" if c in cells else "-"
                    for c in cols]
            lines.append(f"| {method} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


__all__ = ["ALL", "COUNTED", "JUDGED", "KEYS", "Scorers", "check_scorers", "layer_table",
           "markdown", "predictors", "score_unit"]
