"""The all-activation-levels protocol (`n2g eval --protocol levels`), next to the paper's.

Why: the paper's protocol (protocol.py) asks a graph only about a neuron's top 20 windows, so it
never learns whether the graph knows the weak and mid-level activations that make up most of a
neuron's firing, nor (except in the separate false-firing test) how it behaves on ordinary text.
Here every predictor is scored on held-out windows drawn across the neuron's activation levels
plus random text, with one split shared by every predictor:

- *activating* windows: the neuron's recorded top windows and every window of the run's uniform
  random sample whose max reaches `min_act` x a_max (default 0.2), put into `n_quantiles` (10)
  equal-count bins by window max; *quiet* windows: the other random-sample windows;
- both groups are split train / validation / test with a fixed 10-slot pattern (5 / 2 / 3)
  walked through the windows in bin order after a shuffle seeded by (seed, layer, neuron), so
  every split covers every activation level (stratified) and no window is in two splits;
- graph builders get the strongest train activating windows (the paper method: `n_train`, 10;
  methods that want more: up to `n_build`, 20); the improved method calibrates on *all* train
  windows, and the token / n-gram lookups are fitted on all train windows too;
- scoring (`split`, default "test"; "val" is for choosing settings) pools every token of the
  held-out windows: firing P/R/F1 at a/a_max >= 0.5, non-firing scores and Pearson; the
  false-firing rate is taken on the held-out windows that come from the random sample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from neuron2graph.errors import N2GError
from neuron2graph.evaluate.metrics import false_firing, score_tokens
from neuron2graph.evaluate.predictors import PREDICTORS, fitted_predictors
from neuron2graph.ids import NeuronId

if TYPE_CHECKING:
    from neuron2graph.evaluate.protocol import EvalConfig, ExampleLike, RunLike, TrainSet

PATTERN = ("test", "train", "val", "train", "test", "train", "train", "val", "test", "train")
"""Split labels walked in bin order: 30% test, 20% validation, 50% train."""
SPLITS = ("test", "val")


@dataclass
class LevelsSplit:
    train: list[Any]
    val: list[Any]
    test: list[Any]
    random: set[int]
    """Windows that come from the run's uniform random sample (ordinary text)."""
    bins: dict[int, int]
    """Activating windows: window -> quantile bin (0 weakest); quiet windows are absent."""

    def held(self, split: str) -> list[Any]:
        if split not in SPLITS:
            raise N2GError(f"unknown split {split!r}: use test or val")
        return self.test if split == "test" else self.val


def levels_split(run: RunLike, nid: NeuronId, cfg: EvalConfig) -> LevelsSplit:
    """The seeded train / val / test split of one neuron's windows (see module docstring)."""
    from neuron2graph.explain.examples import quantile_bins

    a_max = run.a_max(nid)
    thr = cfg.min_act * a_max
    sample = list(run.sample_examples(nid))
    random = {int(ex.window) for ex in sample}
    seen: dict[int, Any] = {}
    for ex in [*run.top_examples(nid), *sample]:
        seen.setdefault(int(ex.window), ex)
    windows = sorted(seen.values(), key=lambda ex: int(ex.window))
    active = [ex for ex in windows if ex.max_act >= thr]
    quiet = [ex for ex in windows if ex.max_act < thr]
    rng = np.random.default_rng([cfg.seed, nid.layer, nid.neuron, 1])
    bins = quantile_bins([ex.max_act for ex in active], cfg.n_quantiles) if active else []
    order = [int(i) for i in rng.permutation(len(active))]
    order.sort(key=lambda i: bins[i])  # stable: shuffled within each bin, bins in order
    parts: dict[str, list[Any]] = {"train": [], "val": [], "test": []}
    for slot, i in enumerate(order):
        parts[PATTERN[slot % len(PATTERN)]].append(active[i])
    for slot, i in enumerate(int(j) for j in rng.permutation(len(quiet))):
        parts[PATTERN[(slot + 1) % len(PATTERN)]].append(quiet[i])
    return LevelsSplit(parts["train"], parts["val"], parts["test"], random,
                       {int(active[i].window): bins[i] for i in range(len(active))})


def levels_train_set(run: RunLike, nid: NeuronId, cfg: EvalConfig,
                     split: LevelsSplit | None = None) -> TrainSet:
    """The builders' view of the train split: strongest activating windows, then calibration."""
    from neuron2graph.evaluate.protocol import TrainSet

    split = split or levels_split(run, nid, cfg)
    a_max = run.a_max(nid)
    active = sorted((ex for ex in split.train if ex.max_act >= cfg.min_act * a_max),
                    key=lambda ex: (-ex.max_act, int(ex.window)))
    build = active[: max(cfg.n_train, cfg.n_build)]
    paper, more = build[: cfg.n_train], build[cfg.n_train:]
    return TrainSet(
        nid=nid, a_max=a_max, examples=[list(ex.token_ids) for ex in paper],
        acts=[list(ex.acts) for ex in paper], more=[list(ex.token_ids) for ex in more],
        more_acts=[list(ex.acts) for ex in more],
        calibration=[(list(ex.token_ids), list(ex.acts)) for ex in split.train],
    )


def _graph_fn(graph: Any, search: str) -> Callable[[Any], list[float]]:
    return lambda ex: list(graph.predict(ex.tokens, search=search))


def _norm(ex: ExampleLike, a_max: float) -> list[float]:
    return [float(a) / a_max for a in ex.acts]


def evaluate_neuron_levels(run: RunLike, nid: NeuronId, cfg: EvalConfig,
                           graphs: dict[str, Any]) -> dict[str, Any]:
    """Score every registered predictor on one neuron's held-out windows; returns its row."""
    split = levels_split(run, nid, cfg)
    a_max = run.a_max(nid)
    predictors: dict[str, Callable[[Any], list[float]]] = {}
    for method, graph in graphs.items():
        predictors[method] = _graph_fn(graph, str(PREDICTORS[method].search))
    ids = [list(ex.token_ids) for ex in split.train]
    acts = [_norm(ex, a_max) for ex in split.train]
    for p in fitted_predictors():
        if p.enabled(cfg) and p.fit is not None:
            predictors[p.name] = p.fit(ids, acts, cfg)
    row = score_levels(run, nid, cfg, predictors, split)
    for method, graph in graphs.items():
        row["methods"][method]["n_nodes"] = graph.n_nodes()
    return row


def score_levels(run: RunLike, nid: NeuronId, cfg: EvalConfig,
                 predictors: dict[str, Callable[[Any], list[float]]],
                 split: LevelsSplit | None = None) -> dict[str, Any]:
    """Score any predictors (example -> normalised activations) on the held-out `cfg.split`
    windows of one neuron (benchmarks/quality.py scores its ablation variants through this)."""
    split = split or levels_split(run, nid, cfg)
    a_max = run.a_max(nid)
    held = split.held(cfg.split)
    real = [_norm(ex, a_max) for ex in held]
    rand = [i for i, ex in enumerate(held) if int(ex.window) in split.random]
    methods: dict[str, Any] = {}
    for method, predict in predictors.items():
        pred = [predict(ex) for ex in held]
        entry: dict[str, Any] = score_tokens(real, pred, threshold=cfg.threshold).to_json()
        entry["false_firing"] = false_firing(
            [real[i] for i in rand], [pred[i] for i in rand], threshold=cfg.threshold).to_json()
        entry["by_level"] = _by_level(held, real, pred, split, cfg)
        methods[method] = entry
    n_fire = sum(1 for r in real for v in r if v >= cfg.threshold)
    return {
        "layer": nid.layer, "neuron": nid.neuron, "id": str(nid), "seed": cfg.seed,
        "a_max": a_max, "protocol": "levels", "split": cfg.split,
        "n_firing_examples": sum(1 for ex in held if ex.max_act >= cfg.threshold * a_max),
        "train_windows": [int(ex.window) for ex in split.train],
        "test_windows": [int(ex.window) for ex in held],
        "test": {"n_examples": len(held), "n_tokens": sum(len(r) for r in real),
                 "n_firing": n_fire, "n_random": len(rand)},
        "sample": {"n_windows": len(rand), "n_tokens": sum(len(real[i]) for i in rand)},
        "methods": methods,
    }


def _by_level(held: Sequence[Any], real: list[list[float]], pred: list[list[float]],
              split: LevelsSplit, cfg: EvalConfig) -> dict[str, float | None]:
    """Pearson of the held-out activating windows by level (weak, mid, strong thirds of the
    bins) and on quiet text: where a predictor's graded values hold up and where they do not."""
    groups: dict[str, tuple[list[float], list[float]]] = {
        k: ([], []) for k in ("weak", "mid", "strong", "quiet")}
    n = cfg.n_quantiles
    for ex, r, p in zip(held, real, pred, strict=True):
        b = split.bins.get(int(ex.window))
        key = "quiet" if b is None else ("weak" if b < n // 3 else "mid" if b < 2 * n // 3
                                         else "strong")
        groups[key][0].extend(r)
        groups[key][1].extend(p)
    out: dict[str, float | None] = {}
    for key, (r, p) in groups.items():
        out[f"pearson_{key}"] = score_tokens([r], [p], threshold=cfg.threshold).pearson if r \
            else None
    return out


__all__ = ["PATTERN", "LevelsSplit", "evaluate_neuron_levels", "levels_split",
           "levels_train_set", "score_levels"]
