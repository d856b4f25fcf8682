"""The paper's evaluation protocol (§4), with baselines, exclusions and a false-firing test.

Per neuron: take its top-`k` examples (20) from the run, split them `n_train`/rest (10/10) with a
seed, build a graph on the train half, predict the test half, and score the predictions against
the recorded activations normalised by the neuron's max over the corpus (`metrics.py`). The token
and 5-gram lookups and the "official choices" graph are fitted on the *same* train half and scored
on the *same* test half. Each predictor is also run on ordinary text: the run's uniform random
sample of windows minus every window among the neuron's recorded top examples, where the
false-firing rate is the share of tokens predicted to fire among those where the neuron does not.

Which neurons: `per_layer` neurons per layer drawn at random (seeded, per layer) among *alive*
ones. Alive means: max activation over the recorded corpus > 0 and finite, at least `k` top
examples recorded, and at least `min_firing_examples` of them firing (window max / a_max >=
threshold) — with fewer, the train or the test half very likely holds no firing token at all.
Candidates are drawn in a fixed random order per layer and every drawn-but-rejected neuron is
listed with its reason, so nothing is dropped silently. Because the order only depends on the
seed, a larger `per_layer` extends a smaller one, and finished neurons are reused.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from neuron2graph.errors import N2GError
from neuron2graph.evaluate import storage
from neuron2graph.evaluate.metrics import false_firing, score_tokens
from neuron2graph.evaluate.predictors import PREDICTORS, fitted_predictors, graph_predictors, labels
from neuron2graph.ids import NeuronId

if TYPE_CHECKING:
    from neuron2graph.stages.executor import Executor

GRAPH_METHODS: dict[str, str] = {p.name: str(p.search) for p in graph_predictors()}
"""The built-in graph methods and their searches (a snapshot; code reads the registry itself)."""
METHOD_LABELS: dict[str, str] = labels()
"""The built-in labels (a snapshot of `evaluate.predictors.labels()`)."""


class ExampleLike(Protocol):
    window: int
    token_ids: list[int]
    tokens: list[str]
    acts: list[float]
    max_act: float


class RunLike(Protocol):
    """What the protocol needs from `neuron2graph.store.run.Run` (tests pass a small fake)."""

    path: Path
    manifest: dict[str, Any]

    @property
    def layers(self) -> list[int]: ...
    @property
    def n_neurons(self) -> int: ...
    def a_max(self, nid: Any) -> float: ...
    def top_examples(self, nid: Any, k: int | None = None) -> Sequence[ExampleLike]: ...
    def sample_examples(self, nid: Any) -> Sequence[ExampleLike]: ...
    def db(self) -> Any: ...


@dataclass(frozen=True)
class TrainSet:
    """What a graph builder gets for one neuron: the train half of its top examples."""

    nid: NeuronId
    a_max: float
    examples: list[list[int]]
    """The paper method's examples (the protocol's `n_train`)."""
    acts: list[list[float]] | None = None
    """Their recorded raw activations (None: the builder looks them up or measures them)."""
    more: list[list[int]] = field(default_factory=list)
    """Further train examples, strongest first, for methods that build on more (improved)."""
    more_acts: list[list[float]] = field(default_factory=list)
    calibration: list[tuple[list[int], list[float]]] | None = None
    """(token ids, raw activations) of every train window, for the improved method's
    calibration (None: it calibrates on its build examples only)."""


BuildFn = Callable[[Sequence[TrainSet], str], list[Any]]
"""Build one graph (a NeuronGraph) per train set, for method "n2g" or "official", in order."""


@dataclass(frozen=True)
class EvalConfig:
    seed: int = 0
    k: int = 20
    """Top examples per neuron (the paper: Neuroscope's top 20)."""
    n_train: int = 10
    threshold: float = 0.5
    """A token fires when a / a_max >= threshold (truth and predictions alike)."""
    min_firing_examples: int = 2
    ngram: int = 5
    official: bool = True
    """Also build the official-choices graph (doubles the build time)."""
    false_firing: bool = True
    build: dict[str, Any] = field(default_factory=dict)
    """Settings of the graph builder (model, N2G config); part of the resume fingerprint."""
    improved: bool = True
    """Also build and score the improved N2G method (`n2g/calibrate.py`)."""
    protocol: str = "paper"
    """`paper` (top-k examples, this module) or `levels` (all activation levels, levels.py)."""
    split: str = "test"
    """Levels protocol: score the `test` windows, or `val` to choose settings."""
    min_act: float = 0.2
    """Levels protocol: a window is activating when its max reaches min_act x a_max."""
    n_quantiles: int = 10
    n_build: int = 20
    """Levels protocol: train windows offered to builders that use more than `n_train`."""
    batch_neurons: int = 1
    """Neurons of one layer built together (speed only: not part of the fingerprint). Raise it on
    a GPU; on a CPU the forwards are compute-bound anyway, and 1 keeps a time-boxed run balanced
    across layers (one round = one batch per layer)."""

    def settings(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("batch_neurons")
        if self.protocol == "paper":  # the paper's protocol has the fingerprint it always had
            for key in ("protocol", "split", "min_act", "n_quantiles", "n_build"):
                out.pop(key)
        return out

    def check(self) -> None:
        if self.protocol not in ("paper", "levels"):
            raise N2GError(f"unknown protocol {self.protocol!r}: use paper or levels")
        if self.split not in ("test", "val"):
            raise N2GError(f"unknown split {self.split!r}: use test or val")
        if not 0 < self.min_act <= 1:
            raise N2GError(f"--min-act {self.min_act} must be in (0, 1]")


@dataclass
class Selection:
    selected: list[NeuronId]
    excluded: list[dict[str, Any]]
    """{"neuron": "L:N", "reason": "..."} for every drawn or requested neuron that was rejected."""
    shortfall: dict[int, int]
    """Layers where fewer than per_layer alive neurons exist: layer -> how many are missing."""


def why_not_alive(run: RunLike, nid: NeuronId, cfg: EvalConfig) -> str | None:
    """None when the neuron can be evaluated, else the reason it is excluded."""
    a_max = run.a_max(nid)
    if not math.isfinite(a_max):
        return f"max activation is {a_max}: the recording holds NaN/inf"
    if a_max <= 0:
        return "never fires: max activation over the recorded corpus is <= 0"
    top = run.top_examples(nid, cfg.k)
    if len(top) < cfg.k:
        return f"only {len(top)} top examples recorded, the protocol needs {cfg.k}"
    firing = sum(1 for ex in top if ex.max_act / a_max >= cfg.threshold)
    if firing < cfg.min_firing_examples:
        return (
            f"only {firing} of its top {cfg.k} examples fire (max >= {cfg.threshold} a_max), "
            f"need {cfg.min_firing_examples}"
        )
    return None


def layer_order(n_neurons: int, layer: int, seed: int) -> list[int]:
    """The seeded random order in which a layer's neurons are drawn."""
    return [int(i) for i in np.random.default_rng([seed, layer]).permutation(n_neurons)]


def select_neurons(
    run: RunLike,
    cfg: EvalConfig,
    *,
    layers: Sequence[int] | None = None,
    per_layer: int = 50,
    neurons: Sequence[NeuronId] | None = None,
) -> Selection:
    """Explicit `neurons`, or `per_layer` random alive neurons from each of `layers`."""
    recorded = set(run.layers)
    selected: list[NeuronId] = []
    excluded: list[dict[str, Any]] = []
    shortfall: dict[int, int] = {}
    if neurons:
        for nid in neurons:
            _check_recorded(run, nid.layer, recorded)
            if not 0 <= nid.neuron < run.n_neurons:
                raise N2GError(f"neuron {nid} is out of range: neurons are 0..{run.n_neurons - 1}")
            reason = why_not_alive(run, nid, cfg)
            if reason:
                excluded.append({"neuron": str(nid), "reason": reason})
            else:
                selected.append(nid)
        return Selection(selected, excluded, shortfall)
    if per_layer < 1:
        raise N2GError("--per-layer must be at least 1")
    for layer in layers if layers is not None else sorted(recorded):
        _check_recorded(run, layer, recorded)
        taken = 0
        for neuron in layer_order(run.n_neurons, layer, cfg.seed):
            if taken >= per_layer:
                break
            nid = NeuronId(layer, neuron)
            reason = why_not_alive(run, nid, cfg)
            if reason:
                excluded.append({"neuron": str(nid), "reason": reason})
            else:
                selected.append(nid)
                taken += 1
        if taken < per_layer:
            shortfall[layer] = per_layer - taken
    return Selection(selected, excluded, shortfall)


def _check_recorded(run: RunLike, layer: int, recorded: set[int]) -> None:
    if layer not in recorded:
        have = ",".join(str(x) for x in sorted(recorded))
        raise N2GError(
            f"layer {layer} was not recorded in {run.path} (recorded: {have}): pass --layers "
            f"among those, or record it with n2g record --layers {layer}"
        )


def split_indices(n: int, n_train: int, seed: int, nid: NeuronId) -> tuple[list[int], list[int]]:
    """Seeded train/test split of `n` examples; depends only on (seed, neuron), not on order."""
    if not 0 < n_train < n:
        raise N2GError(f"cannot split {n} examples into {n_train} train and the rest test")
    perm = np.random.default_rng([seed, nid.layer, nid.neuron]).permutation(n)
    return sorted(int(i) for i in perm[:n_train]), sorted(int(i) for i in perm[n_train:])


def _norm(acts: Sequence[float], a_max: float) -> list[float]:
    return [float(a) / a_max for a in acts]


def _graph_predictor(graph: Any, search: str) -> Callable[[ExampleLike], list[float]]:
    def predict(ex: ExampleLike) -> list[float]:
        return list(graph.predict(ex.tokens, search=search))

    return predict


def _graph_info(graph: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"n_nodes": graph.n_nodes(), "n_activating": len(graph.root.children)}
    stats = graph.meta.get("stats") if isinstance(getattr(graph, "meta", None), dict) else None
    if isinstance(stats, dict):  # the builder's bill: model work, pruning misses, flags
        info["build_stats"] = stats
    return info


def evaluate_neuron(
    run: RunLike,
    nid: NeuronId,
    cfg: EvalConfig,
    graphs: dict[str, Any],
) -> dict[str, Any]:
    """Score every method on one neuron's test half (and ordinary text); returns its result row.

    `graphs` maps graph methods ("n2g", "official") to graphs already built on the train half.
    """
    a_max = run.a_max(nid)
    top = list(run.top_examples(nid, cfg.k))
    train_idx, test_idx = split_indices(len(top), cfg.n_train, cfg.seed, nid)
    train = [top[i] for i in train_idx]
    test = [top[i] for i in test_idx]
    real = [_norm(ex.acts, a_max) for ex in test]

    predictors: dict[str, Callable[[ExampleLike], list[float]]] = {}
    for method, graph in graphs.items():
        predictors[method] = _graph_predictor(graph, str(PREDICTORS[method].search))
    train_ids = [ex.token_ids for ex in train]
    train_acts = [_norm(ex.acts, a_max) for ex in train]
    for p in fitted_predictors():
        if p.enabled(cfg) and p.fit is not None:
            predictors[p.name] = p.fit(train_ids, train_acts, cfg)

    sample: list[ExampleLike] = []
    if cfg.false_firing:
        top_windows = {ex.window for ex in run.top_examples(nid)}
        sample = [ex for ex in run.sample_examples(nid) if ex.window not in top_windows]
    sample_real = [_norm(ex.acts, a_max) for ex in sample]

    methods: dict[str, Any] = {}
    for method, predict in predictors.items():
        t0 = time.perf_counter()
        scores = score_tokens(real, [predict(ex) for ex in test], threshold=cfg.threshold)
        entry: dict[str, Any] = scores.to_json()
        if cfg.false_firing:
            pred = [predict(ex) for ex in sample]
            ff = false_firing(sample_real, pred, threshold=cfg.threshold)
            entry["false_firing"] = ff.to_json()
        entry["predict_s"] = round(time.perf_counter() - t0, 4)
        if method in graphs:
            entry.update(_graph_info(graphs[method]))
        methods[method] = entry

    n_firing = sum(1 for ex in top if ex.max_act / a_max >= cfg.threshold)
    return {
        "layer": nid.layer,
        "neuron": nid.neuron,
        "id": str(nid),
        "seed": cfg.seed,
        "a_max": a_max,
        "n_firing_examples": n_firing,
        "train_windows": [ex.window for ex in train],
        "test_windows": [ex.window for ex in test],
        "test": {
            "n_examples": len(test),
            "n_tokens": sum(len(r) for r in real),
            "n_firing": sum(1 for r in real for v in r if v >= cfg.threshold),
        },
        "sample": {"n_windows": len(sample), "n_tokens": sum(len(r) for r in sample_real)},
        "methods": methods,
    }


def train_set(run: RunLike, nid: NeuronId, cfg: EvalConfig) -> TrainSet:
    top = list(run.top_examples(nid, cfg.k))
    train_idx, _ = split_indices(len(top), cfg.n_train, cfg.seed, nid)
    return TrainSet(nid=nid, a_max=run.a_max(nid), examples=[top[i].token_ids for i in train_idx])


@dataclass
class EvalOutcome:
    rows: list[dict[str, Any]]
    """One finished row per selected neuron that is done, in selection order."""
    computed: int
    reused: int
    wall_s: float
    failed: list[dict[str, Any]] = field(default_factory=list)
    """{"neuron", "reason"} for neurons whose build raised (not saved: a re-run retries them)."""
    pending: list[str] = field(default_factory=list)
    """Selected neurons left for later because the time budget ran out."""


def run_protocol(
    run: RunLike,
    selection: Selection,
    cfg: EvalConfig,
    make_builder: Callable[[], BuildFn] | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    max_seconds: float | None = None,
    augmenter: str | None = "causal",
    device: str = "auto",
    dtype: str | None = None,
    executor: Executor | None = None,
) -> EvalOutcome:
    """Evaluate every selected neuron not evaluated yet (the eval stage, `evaluate/stage.py`).

    Work goes round-robin over layers (one batch of each layer in turn), so a run stopped early
    (killed, or `max_seconds` reached: no new batch starts after it) covers every layer about
    evenly. The builder (`make_builder`, default: the run's model) is only created when there is
    something to build, so a finished evaluation re-renders its report without loading the
    model. A batch whose build raises is reported in `failed` and skipped; the others go on.
    Other settings than those of the results already in the run are refused unless `overwrite`.
    `executor` (a `stages.executor.Executor`; default local) runs the batches: with Ray, each
    actor loads the run's model once and writes its units' files.
    """
    from neuron2graph.evaluate.stage import EvalStage, EvalStageConfig
    from neuron2graph.stages.stage import run_stage
    from neuron2graph.store.run import Run

    config = EvalStageConfig(protocol=cfg, selected=tuple(selection.selected),
                             augmenter=augmenter, device=device, dtype=dtype)
    # A stored run is reopened from its path where the work runs (the stage is pickled into
    # other processes by executors such as Ray); only a test's in-memory run travels as is.
    stage = EvalStage(make_builder, None if isinstance(run, Run) else run)
    out = run_stage(stage, config, run.path, executor, overwrite=overwrite,
                    progress=progress, max_seconds=max_seconds)
    done = dict(out.rows)
    for nid in out.reused:
        row = storage.load_neuron(run.path, nid)
        if row is not None:
            done[nid] = row
    failed = [{"neuron": f["neuron"], "reason": f"evaluation failed: {f['reason']}"}
              for f in out.failed]
    bad = {f["neuron"] for f in failed}
    pending = [str(n) for n in selection.selected if n not in done and str(n) not in bad]
    return EvalOutcome(
        rows=[done[nid] for nid in selection.selected if nid in done],
        computed=out.computed, reused=len(out.reused), wall_s=out.wall_s,
        failed=failed, pending=pending,
    )


def _evaluate_chunk(
    run: RunLike, chunk: list[NeuronId], cfg: EvalConfig, builder: BuildFn
) -> list[dict[str, Any]]:
    """Build the graphs of a batch of neurons of one layer on their train halves, then score."""
    from neuron2graph.evaluate.levels import evaluate_neuron_levels, levels_train_set

    levels = cfg.protocol == "levels"
    sets = [levels_train_set(run, nid, cfg) if levels else train_set(run, nid, cfg)
            for nid in chunk]
    graphs: dict[NeuronId, dict[str, Any]] = {nid: {} for nid in chunk}
    build_s: dict[str, float] = {}
    # CPU seconds of this process too: on a shared machine wall time mostly measures the load.
    c0 = time.process_time()
    for method in [p.name for p in graph_predictors()]:
        if not PREDICTORS[method].enabled(cfg):
            continue
        t0 = time.perf_counter()
        built = builder(sets, method)
        build_s[method] = (time.perf_counter() - t0) / len(chunk)
        for nid, graph in zip(chunk, built, strict=True):
            graph.save(storage.graph_file(run.path, method, nid))
            graphs[nid][method] = graph
    build_cpu = (time.process_time() - c0) / len(chunk)
    rows = []
    for nid in chunk:
        t0, c1 = time.perf_counter(), time.process_time()
        score = evaluate_neuron_levels if levels else evaluate_neuron
        row = score(run, nid, cfg, graphs[nid])
        for method, seconds in build_s.items():
            row["methods"][method]["build_s"] = round(seconds, 3)
        row["seconds"] = round(sum(build_s.values()) + time.perf_counter() - t0, 3)
        row["cpu_s"] = round(build_cpu + time.process_time() - c1, 3)
        rows.append(row)
    return rows


def interleave_chunks(nids: list[NeuronId], size: int) -> list[list[NeuronId]]:
    """Batches of at most `size` neurons of one layer (the builder batches per layer), taken
    round-robin over layers in the order the layers first appear."""
    per_layer: dict[int, list[list[NeuronId]]] = {}
    for nid in nids:
        groups = per_layer.setdefault(nid.layer, [])
        if groups and len(groups[-1]) < max(1, size):
            groups[-1].append(nid)
        else:
            groups.append([nid])
    out: list[list[NeuronId]] = []
    rounds = max((len(g) for g in per_layer.values()), default=0)
    for i in range(rounds):
        out += [groups[i] for groups in per_layer.values() if i < len(groups)]
    return out


__all__ = [
    "GRAPH_METHODS",
    "METHOD_LABELS",
    "BuildFn",
    "EvalConfig",
    "EvalOutcome",
    "RunLike",
    "Selection",
    "TrainSet",
    "evaluate_neuron",
    "interleave_chunks",
    "layer_order",
    "run_protocol",
    "select_neurons",
    "split_indices",
    "train_set",
    "why_not_alive",
]
