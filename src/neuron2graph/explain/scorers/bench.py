"""Detection, fuzzing and simulation — for sentences (asked of an LLM) and for predictors.

The same items go to every method, which is the point: a *predictor* (the N2G graph, the token
lookup, the n-gram lookup: anything that predicts a normalised activation per token) is run as a
classifier/simulator on exactly the contexts a *sentence* is judged on.

- Detection: every scoring context (test activating, negatives, hard negatives); label 1 when the
  unit fires in it (max >= min_act a_max). A sentence's score is P("1") from the judge's log-probs
  (the parsed 0/1 answer when the endpoint gives no log-probs); a predictor's score is its max
  normalised prediction over the context. Decision at 0.5 for a judge, at min_act for a predictor.
- Fuzzing: every test activating context twice, once with its firing tokens marked <<like this>>
  (label 1) and once with as many marks moved to random non-firing tokens (label 0), plus every
  negative with random marks (label 0). A predictor's score is the share of marked tokens it
  predicts to fire (>= min_act); decision at 0.5.
- Simulation: predicted activation of every token of every scoring context against the real
  normalised activation; Pearson correlation over all tokens together. A sentence's predictions
  are the judge's 0-10 per token / 10.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from neuron2graph.explain.examples import Context, UnitExamples
from neuron2graph.explain.llm import Answer, ChatModel, p_one
from neuron2graph.explain.prompts import (
    highlight,
    messages,
    parse_simulation,
    tokens_block,
)
from neuron2graph.explain.scorers.metrics import classification, pearson

Predict = Callable[[Context], list[float]]


class EndpointDown(Exception):
    """The judge's endpoint could not be reached: stop, keep finished units."""


@dataclass
class FuzzItem:
    context: Context
    marks: list[bool]
    label: int


def firing(ctx: Context, a_max: float, min_act: float) -> list[bool]:
    return [a >= min_act * a_max for a in ctx.acts]


def fuzz_items(ex: UnitExamples, min_act: float, seed: int) -> list[FuzzItem]:
    """Correctly and wrongly marked contexts (seeded by the unit, so every method gets these)."""
    layer, neuron = (int(x) for x in ex.unit.split(":"))
    rng = np.random.default_rng([seed, layer, neuron, 7])
    items: list[FuzzItem] = []
    counts: list[int] = []
    for ctx in ex.test:
        marks = firing(ctx, ex.a_max, min_act)
        n = sum(marks)
        if n == 0:
            continue
        counts.append(n)
        items.append(FuzzItem(ctx, marks, 1))
        quiet = [i for i, m in enumerate(marks) if not m]
        if quiet:
            pick = set(rng.choice(quiet, size=min(n, len(quiet)), replace=False).tolist())
            items.append(FuzzItem(ctx, [i in pick for i in range(len(marks))], 0))
    for ctx in ex.negative + ex.hard_negative:
        if not ctx.tokens:
            continue
        n = int(counts[int(rng.integers(len(counts)))]) if counts else 1
        pick = set(rng.choice(len(ctx.tokens), size=min(n, len(ctx.tokens)),
                              replace=False).tolist())
        items.append(FuzzItem(ctx, [i in pick for i in range(len(ctx.tokens))], 0))
    return items


def text_of(ctx: Context) -> str:
    return "".join(ctx.tokens)


# ------------------------------------------------------------------------------- predictors
def score_predictor(predict: Predict, ex: UnitExamples, items: list[FuzzItem],
                    min_act: float) -> dict[str, Any]:
    """Detection, fuzzing and simulation of one predictor on the unit's items."""
    scoring = ex.scoring
    preds = [predict(c) for c in scoring]
    labels = [1 if c.activating else 0 for c in scoring]
    det = classification([max(p, default=0.0) for p in preds], labels, min_act)
    fz_scores = []
    for item in items:
        pred = predict(item.context)
        marked = [p for p, m in zip(pred, item.marks, strict=True) if m]
        fz_scores.append(sum(1 for p in marked if p >= min_act) / len(marked) if marked else 0.0)
    fuzz = classification(fz_scores, [it.label for it in items], 0.5)
    real = [a / ex.a_max for c in scoring for a in c.acts]
    flat = [p for row in preds for p in row]
    sim = {"pearson": pearson(flat, real), "n_tokens": len(real), "n_contexts": len(scoring)}
    return {"detection": det, "fuzz": fuzz, "simulation": sim}


# -------------------------------------------------------------------------------- sentences
def _judged(answers: list[Answer], labels: list[int], what: str) -> dict[str, Any]:
    if any(a.down for a in answers):
        err = next(a.error for a in answers if a.down)
        raise EndpointDown(f"{what}: {err}")
    scores, kept, failed = [], [], 0
    for ans, y in zip(answers, labels, strict=True):
        p = None if ans.error else p_one(ans)
        if p is None:
            failed += 1
            continue
        scores.append(p)
        kept.append(y)
    out = classification(scores, kept, 0.5)
    out["failed"] = failed
    return out


def detection_sentence(judge: ChatModel, explanation: str, ex: UnitExamples) -> dict[str, Any]:
    scoring = ex.scoring
    prompts = [messages("detect", explanation=explanation, text=text_of(c)) for c in scoring]
    return _judged(judge.choice_logprobs(prompts), [int(c.activating) for c in scoring],
                   "detection")


def fuzz_sentence(judge: ChatModel, explanation: str, items: list[FuzzItem]) -> dict[str, Any]:
    prompts = [messages("fuzz", explanation=explanation,
                        text=highlight(it.context.tokens, it.marks)) for it in items]
    return _judged(judge.choice_logprobs(prompts), [it.label for it in items], "fuzzing")


def simulation_sentence(judge: ChatModel, explanation: str, ex: UnitExamples,
                        max_tokens_per_line: int = 6) -> dict[str, Any]:
    """Pearson r of the judge's per-token predictions and the real activations. An in-process
    judge is read all at once (`simulate_slots`: expected 0-9 value at each token's slot, one
    forward per context); an endpoint writes `token<TAB>value` lines, parsed or counted failed."""
    scoring = ex.scoring
    slots = getattr(judge, "simulate_slots", None)
    if slots is not None:  # the answer lines carry the tokens: the prompt shows the text once
        prompts = [messages("simulate_slots", explanation=explanation, text=text_of(c))
                   for c in scoring]
        values = slots(prompts, [c.tokens for c in scoring])
        pred = [v for row in values for v in row]
        real = [a / ex.a_max for c in scoring for a in c.acts]
        return {"pearson": pearson(pred, real), "n_tokens": len(real),
                "n_contexts": len(scoring), "failed": 0, "method": "all-at-once"}
    prompts = [messages("simulate", explanation=explanation, tokens=tokens_block(c.tokens))
               for c in scoring]
    budget = max_tokens_per_line * max((len(c.tokens) for c in scoring), default=1)
    answers = judge.generate(prompts, budget)
    if any(a.down for a in answers):
        raise EndpointDown(f"simulation: {next(a.error for a in answers if a.down)}")
    pred = []
    real = []
    failed = 0
    for ctx, ans in zip(scoring, answers, strict=True):
        parsed = None if ans.error else parse_simulation(ans.text or "", len(ctx.tokens))
        if parsed is None:
            failed += 1
            continue
        pred += [v / 10 for v in parsed]
        real += [a / ex.a_max for a in ctx.acts]
    return {"pearson": pearson(pred, real), "n_tokens": len(real),
            "n_contexts": len(scoring) - failed, "failed": failed, "method": "generated"}


__all__ = ["EndpointDown", "FuzzItem", "detection_sentence", "firing", "fuzz_items",
           "fuzz_sentence", "score_predictor", "simulation_sentence", "text_of"]
