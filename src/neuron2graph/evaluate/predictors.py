"""The registry of predictors: every method that predicts a unit's activations, registered ONCE.

The evaluation protocol builds and scores every registered predictor on the same splits; the
report takes its rows, labels and plot styles from here; the `eval` table gets one F1 column per
predictor from here. Adding a predictor (an LLM simulator, say) is one `register(...)` call:

- a *graph* predictor is an N2G graph built on the train half with `n2g_config(base)` (the
  builder's configuration transformed, e.g. the official code's choices) and predicting with
  `search` ("longest" or "greedy");
- a *fitted* predictor is `fit(train_ids, train_acts, cfg) -> predict(example) -> [float]`,
  fitted on the same train half (token lookup, n-gram lookup).

`flag` names a boolean field of `EvalConfig` that switches the predictor off (e.g. `official`,
which doubles the build time). Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from neuron2graph.errors import N2GError
from neuron2graph.evaluate.baselines import NgramLookup, TokenLookup

PredictFn = Callable[[Any], list[float]]
FitFn = Callable[[Sequence[Sequence[int]], Sequence[Sequence[float]], Any], PredictFn]


@dataclass(frozen=True)
class Predictor:
    name: str
    """Key in results (`row["methods"][name]`) and in `--predictors`-style lists."""
    label: str
    """Human label (report tables, plot legend)."""
    style: tuple[str, str, str]
    """Matplotlib (colour, marker, line style) of its curve."""
    column: str
    """Its firing-token F1 column in the `eval` table."""
    search: str | None = None
    """Graph predictors: the prediction search (None: a fitted predictor)."""
    n2g_config: Callable[[Any], Any] | None = None
    """Graph predictors: the N2G config it builds with, from the builder's base config."""
    fit: FitFn | None = None
    """Fitted predictors: fit on the train half, return the predict function."""
    flag: str | None = None
    """A boolean `EvalConfig` field that switches it off."""

    @property
    def is_graph(self) -> bool:
        return self.search is not None

    def enabled(self, cfg: Any) -> bool:
        return self.flag is None or bool(getattr(cfg, self.flag, True))


PREDICTORS: dict[str, Predictor] = {}
"""Registered predictors in report order (the first one is the headline, N2G)."""


def register(predictor: Predictor) -> Predictor:
    if predictor.name in PREDICTORS:
        raise N2GError(f"predictor {predictor.name!r} is registered twice")
    if (predictor.search is None) == (predictor.fit is None):
        raise N2GError(f"predictor {predictor.name!r} needs either search (a graph) or fit")
    PREDICTORS[predictor.name] = predictor
    return predictor


def official_config(base: Any) -> Any:
    """`base` with the official code's pruning and case/whitespace folding switched on."""
    return replace(base, prune=replace(base.prune, strategy="official"),
                   build=replace(base.build, fold=True))


def improved_config(base: Any) -> Any:
    """`base` with the improved method on (`ImproveConfig`: more examples, calibration)."""
    from neuron2graph.n2g.pipeline import ImproveConfig

    return replace(base, improve=ImproveConfig())


def _token(ids: Sequence[Sequence[int]], acts: Sequence[Sequence[float]], cfg: Any) -> PredictFn:
    lookup = TokenLookup.fit(ids, acts)
    return lambda ex: lookup.predict(ex.token_ids)


def _ngram(ids: Sequence[Sequence[int]], acts: Sequence[Sequence[float]], cfg: Any) -> PredictFn:
    lookup = NgramLookup.fit(ids, acts, n=int(getattr(cfg, "ngram", 5)))
    return lambda ex: lookup.predict(ex.token_ids)


register(Predictor("n2g", "N2G", ("C3", "o", "-"), "f1_firing", search="longest",
                   n2g_config=lambda base: base))
register(Predictor("official", "N2G, official choices", ("C1", "s", "--"), "official_f1_firing",
                   search="greedy", n2g_config=official_config, flag="official"))
register(Predictor("improved", "N2G improved", ("C4", "D", "-"), "improved_f1_firing",
                   search="calibrated", n2g_config=improved_config, flag="improved"))
register(Predictor("token", "token lookup", ("C0", "^", ":"), "token_f1_firing", fit=_token))
register(Predictor("5gram", "5-gram lookup", ("C2", "v", "-."), "ngram_f1_firing", fit=_ngram))


def graph_predictors() -> list[Predictor]:
    return [p for p in PREDICTORS.values() if p.is_graph]


def fitted_predictors() -> list[Predictor]:
    return [p for p in PREDICTORS.values() if not p.is_graph]


def labels() -> dict[str, str]:
    return {p.name: p.label for p in PREDICTORS.values()}


__all__ = [
    "PREDICTORS",
    "Predictor",
    "fitted_predictors",
    "graph_predictors",
    "improved_config",
    "labels",
    "official_config",
    "register",
]
