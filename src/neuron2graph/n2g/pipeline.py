"""The N2G pipeline: prune -> saliency -> augment -> saliency -> build, batched across neurons.

`build_graphs` groups requests by layer and runs each stage for *all* neurons of a layer at once,
through one `LayerRunner` (truncated forwards that read every requested neuron of the layer in a
single pass). Each stage is the typed, separately tested function of its module; this file only
moves data between them. Problems with one neuron (never fires, NaN activation) give that neuron an
empty graph and a flag in its stats; they never stop the others.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from neuron2graph.errors import N2GError
from neuron2graph.ids import NeuronId
from neuron2graph.models.loading import LoadedModel
from neuron2graph.n2g.augment import (
    AugmentConfig,
    Augmenter,
    AugmentItem,
    CausalAugmenter,
    MaskedLMAugmenter,
    important_positions,
)
from neuron2graph.n2g.build import BuildConfig, Prompt, build_graph
from neuron2graph.n2g.calibrate import CalibrateConfig, calibrate
from neuron2graph.n2g.graph import NeuronGraph
from neuron2graph.n2g.prune import PruneConfig, PruneSearch, official_prune_lengths
from neuron2graph.n2g.runner import LayerRunner
from neuron2graph.n2g.saliency import (
    Mask,
    SaliencyConfig,
    activating_positions,
    finish_saliency,
    plan_saliency,
    resolve_mask,
)
from neuron2graph.tokens import token_pieces
from neuron2graph.units.registry import make_source
from neuron2graph.units.source import ActivationSource


@dataclass(frozen=True)
class ImproveConfig:
    """The improved method (`--method improved`, docs/n2g.md): the paper's graph, built on more
    examples, then calibrated over every train window (`n2g/calibrate.py`)."""

    max_examples: int = 20
    """Examples the graph is built from (the paper's protocol: 10)."""
    augment: bool = False
    """Run the augmenter (`N2GConfig.augmenter`) for the improved build. Off by default: chosen
    on validation windows (docs/results.md), and the build is cheaper without it."""
    calibrate: CalibrateConfig = field(default_factory=CalibrateConfig)
    bands: tuple[tuple[int, float, int], ...] = ((0, 0.6, 1), (5, 0.5, 3), (15, 0.5, 1),
                                                 (25, 0.3, 1))
    """Per-layer settings: (first layer, vote, min_count); a layer uses the last band starting at
    or below it, else `calibrate`'s vote and min_count. The defaults were chosen on validation
    windows only by benchmarks/quality.py on SmolLM2-135M (docs/results.md, issue 15) and frozen
    before the test windows were scored (6 neurons per layer at layers 0-29: a noisy choice,
    see docs/results.md)."""

    def for_layer(self, layer: int) -> CalibrateConfig:
        chosen = self.calibrate
        for first, vote, min_count in sorted(self.bands):
            if first <= layer:
                chosen = replace(self.calibrate, vote=vote, min_count=min_count)
        return chosen


@dataclass(frozen=True)
class N2GConfig:
    prune: PruneConfig = field(default_factory=PruneConfig)
    saliency: SaliencyConfig = field(default_factory=SaliencyConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    build: BuildConfig = field(default_factory=BuildConfig)
    augmenter: str | None = "causal"
    """`causal` (the studied model proposes substitutes), a fill-mask model name/path, or None."""
    keep_bos: bool = True
    """Keep a leading BOS in pruned prompts (the model saw it when the example was recorded)."""
    max_batch_tokens: int = 8192
    improve: ImproveConfig | None = None
    """None: the paper's method; else the improved one (calibrated, predicts with back-off)."""


@dataclass
class NeuronRequest:
    layer: int
    neuron: int
    examples: list[list[int]]
    a_max: float
    acts: list[list[float]] | None = None
    """Recorded activations of the examples (measured again when None)."""
    calibration: list[tuple[list[int], list[float]]] | None = None
    """Improved method: (token ids, raw activations) of the windows to calibrate on (None: the
    examples themselves). Must not hold any window the graph is later tested on."""


@dataclass
class BuildStats:
    examples: int = 0
    examples_not_firing: int = 0
    pruned_threshold_not_met: int = 0
    augmented_prompts: int = 0
    paths: int = 0
    token_layers: float = 0.0
    padded_token_layers: float = 0.0
    forward_seconds: float = 0.0
    seconds: float = 0.0
    official_token_layers: float = 0.0
    """Estimate of what the official algorithm runs on the same examples (see docs/n2g.md)."""
    stage_token_layers: dict[str, float] = field(default_factory=dict)
    """Token-layers per stage: examples, prune, saliency, augment, augmented (their saliency)."""
    flags: list[str] = field(default_factory=list)
    official_forwards: list[tuple[str, int, int]] = field(default_factory=list)
    """The forwards behind `official_token_layers`: (stage, rows, tokens per row), each at full
    depth; `benchmarks/build.py --reference` runs them to time the official schedule. Not
    saved with the graph (`as_dict` leaves it out)."""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "official_forwards"}


@dataclass
class BuildResult:
    graph: NeuronGraph
    stats: BuildStats


@dataclass
class _Work:
    """One neuron's state through the stages of a layer group."""

    col: int
    req: NeuronRequest
    stats: BuildStats
    prompts: list[Prompt] = field(default_factory=list)
    ids: list[list[int]] = field(default_factory=list)
    keys: list[int] = field(default_factory=list)
    alive: bool = True
    example_acts: list[list[float]] = field(default_factory=list)

    def fail(self, flag: str) -> None:
        self.alive = False
        self.stats.flags.append(flag)


@dataclass
class Job:
    """One prompt to measure (activations, then importances) for one neuron."""

    work: _Work
    ids: list[int]
    """The prompt's token ids."""
    bos: bool
    """The prompt starts with a kept BOS."""
    example: int | None
    """Index of the source example among the neuron's examples."""
    shared: tuple[list[int], int] | None = None
    """(prompt, k): this prompt repeats `prompt[:k]` (an augmentation replacing token k), so
    the runner can run it from the KV cache of that prefix."""


@dataclass
class Search:
    """One example's prune search, for one neuron."""

    work: _Work
    example: int
    search: PruneSearch


def _check_acts(acts: Sequence[float]) -> None:
    if any(not math.isfinite(a) for a in acts):
        raise N2GError("activation is NaN or inf: check the model weights and dtype (try fp32)")


def _make_augmenter(lm: LoadedModel, runner: LayerRunner, config: N2GConfig) -> Augmenter | None:
    if not config.augmenter or config.augment.n_substitutes <= 0:
        return None
    if config.improve is not None and not config.improve.augment:
        return None
    if config.augmenter == "causal":
        tok = lm.tokenizer
        specials = [getattr(tok, f"{n}_token_id", None) for n in ("pad", "bos", "eos", "unk")]
        return CausalAugmenter(
            runner.next_tokens,
            config.augment,
            exclude=[int(s) for s in specials if s is not None],
            rerank_many=runner.rerank_many,
            propose=runner.propose,
        )
    key = (config.augmenter, id(lm.tokenizer), config.augment)
    if key not in _MLM_CACHE:  # load a fill-mask model once, not once per layer or chunk
        _MLM_CACHE.clear()
        _MLM_CACHE[key] = MaskedLMAugmenter(
            config.augmenter, lm.tokenizer, config.augment, device=str(lm.device)
        )
    return _MLM_CACHE[key]


_MLM_CACHE: dict[tuple[str, int, AugmentConfig], MaskedLMAugmenter] = {}


def _measure(
    runner: LayerRunner,
    works: list[_Work],
    jobs: list[Job],
    config: N2GConfig,
    mask: Mask,
    key_rows: dict[int, int],
) -> list[Prompt | None]:
    """Activations then importance rows for (work, ids, has_bos, example) jobs, all batched."""
    acts = runner.acts([j.ids for j in jobs], [j.work.col for j in jobs],
                       shared=[j.shared for j in jobs])
    plans = []
    for n, (job, a) in enumerate(zip(jobs, acts, strict=True)):
        w, ids, bos = job.work, job.ids, job.bos
        try:
            _check_acts(a)
        except N2GError as exc:
            if w.alive:
                w.fail(f"nan_activation: {exc}")
        rows = [
            j
            for j in activating_positions(a, w.req.a_max, config.build.activation_threshold)
            if not (bos and j == 0)
        ]
        if n in key_rows and a[key_rows[n]] > 0:
            rows = sorted(set(rows) | {key_rows[n]})
        if not w.alive:
            rows = []
        plans.append(
            plan_saliency(ids, a, rows, mask, skip_first=bos and not config.saliency.mask_first)
        )
    flat = [
        (v, jobs[i].work.col, at, (p.token_ids, k))
        for i, p in enumerate(plans)
        for v, at, k in zip(p.variants, p.mean_at, p.masked, strict=True)
    ]
    # variant k repeats its prompt's tokens[:k]: the runner runs it from that prefix's KV cache
    vacts = runner.acts([v for v, _c, _a, _s in flat], [c for _v, c, _a, _s in flat],
                        mean_at=[a for _v, _c, a, _s in flat], shared=[s for *_x, s in flat])
    out: list[Prompt | None] = []
    pos = 0
    for job, plan in zip(jobs, plans, strict=True):
        w, ids, bos, ex = job.work, job.ids, job.bos, job.example
        chunk = vacts[pos : pos + len(plan.variants)]
        pos += len(plan.variants)
        if not w.alive:
            out.append(None)
            continue
        try:
            imps = finish_saliency(plan, chunk)
        except N2GError as exc:
            w.fail(f"nan_activation: {exc}")
            out.append(None)
            continue
        out.append(Prompt(token_pieces(runner.lm.tokenizer, ids), plan.acts, imps.rows, ex, bos))
    return out


def _build_layer(
    lm: LoadedModel,
    layer: int,
    reqs: list[tuple[int, NeuronRequest]],
    config: N2GConfig,
    progress: Callable[[int], None] | None,
    source: ActivationSource | None = None,
) -> dict[int, BuildResult]:
    start = time.perf_counter()
    works = [
        _Work(col, req, BuildStats(examples=len(req.examples)))
        for col, (_i, req) in enumerate(reqs)
    ]
    runner = LayerRunner(
        lm, layer, [r.neuron for _i, r in reqs], max_batch_tokens=config.max_batch_tokens,
        source=source,
    )
    mask = resolve_mask(lm.tokenizer, config.saliency.mask)
    bos_id = getattr(lm.tokenizer, "bos_token_id", None) if config.keep_bos else None
    depth = lm.n_layers
    for w in works:
        if not math.isfinite(w.req.a_max):
            w.fail("nan_activation: a_max is NaN or inf")
        elif w.req.a_max <= 0:
            w.fail("never_fires: a_max <= 0, the neuron never activates on the corpus")
        elif not w.req.examples:
            w.fail("no_examples")
    live = [w for w in works if w.alive]
    searches = _prune_all(runner, live, config, bos_id)
    jobs: list[Job] = []
    key_rows: dict[int, int] = {}
    for found in searches:
        w, e, search = found.work, found.example, found.search
        res = search.result()
        if not res.threshold_met:
            w.stats.pruned_threshold_not_met += 1
        shortest = search.chosen if res.threshold_met else None
        tried = official_prune_lengths(search.key, shortest, config.prune)
        w.stats.official_token_layers += sum(tried) * depth
        w.stats.official_forwards.extend(("prune", 1, n) for n in tried)
        bos = bool(
            bos_id is not None
            and res.token_ids
            and res.token_ids[0] == bos_id
            and res.key_index > 0
        )
        key_rows[len(jobs)] = res.key_index
        w.keys.append(res.key_index)
        jobs.append(Job(w, res.token_ids, bos, e))
    # 2. measure + saliency of the pruned prompts
    runner.stage = "saliency"
    prompts = _measure(runner, works, jobs, config, mask, key_rows)
    for w, prompt in zip((j.work for j in jobs), prompts, strict=True):
        if prompt is not None and w.alive:
            w.prompts.append(prompt)
    # 3. augment (positions important for the key token), then measure the new prompts
    augmenter = _make_augmenter(lm, runner, config)
    if augmenter is not None:
        _augment(runner, augmenter, works, jobs, prompts, key_rows, config, mask)
    # 4. build, and the official algorithm's bill on the same prompts
    overhead = time.perf_counter() - start - sum(m.forward_seconds for m in runner.meters)
    results: dict[int, BuildResult] = {}
    for w, (index, req) in zip(works, reqs, strict=True):
        results[index] = _finish(w, req, runner, config, overhead / len(works))
        if progress is not None:
            progress(1)
    return results


def _prune_all(
    runner: LayerRunner, live: list[_Work], config: N2GConfig, bos_id: int | None
) -> list[Search]:
    """Measure the examples (unless recorded activations came with them), then prune them all,
    every example of every neuron advancing one batch at a time."""
    runner.stage = "examples"
    need = [(w, ex) for w in live if w.req.acts is None for ex in w.req.examples]
    measured = iter(runner.acts([ex for _w, ex in need], [w.col for w, _ex in need]))
    searches: list[Search] = []
    depth = runner.lm.n_layers
    for w in live:
        all_acts = w.req.acts or [next(measured) for _ in w.req.examples]
        w.example_acts = [list(a) for a in all_acts]
        # the official prune runs every full example once to read its activations
        w.stats.official_token_layers += sum(len(ex) for ex in w.req.examples) * depth
        w.stats.official_forwards.extend(("examples", 1, len(ex)) for ex in w.req.examples)
        for e, (ex, acts) in enumerate(zip(w.req.examples, all_acts, strict=True)):
            if not ex or (all(math.isfinite(a) for a in acts) and max(acts) <= 0):
                w.stats.examples_not_firing += 1
                continue
            try:
                searches.append(
                    Search(w, e, PruneSearch(list(ex), list(acts), config.prune, bos_id,
                                             w.req.a_max))
                )
            except N2GError as exc:
                w.fail(f"bad_example: {exc}")
                break
    searches = [s for s in searches if s.work.alive]
    runner.stage = "prune"
    while True:
        todo = [(s, p) for s in searches if not s.search.done for p in s.search.pending()]
        if not todo:
            return searches
        out = runner.acts([p for _s, p in todo], [s.work.col for s, _p in todo])
        per: dict[int, list[float]] = {}
        for (s, _p), a in zip(todo, out, strict=True):
            per.setdefault(id(s.search), []).append(a[-1])
        for s in searches:
            if id(s.search) in per:
                s.search.feed(per[id(s.search)])


def _augment(
    runner: LayerRunner,
    augmenter: Augmenter,
    works: list[_Work],
    jobs: list[Job],
    prompts: list[Prompt | None],
    key_rows: dict[int, int],
    config: N2GConfig,
    mask: Mask,
) -> None:
    items: list[tuple[_Work, AugmentItem, bool, int | None]] = []
    for n, (job, prompt) in enumerate(zip(jobs, prompts, strict=True)):
        w, ids, bos, ex = job.work, job.ids, job.bos, job.example
        if prompt is None or not w.alive:
            continue
        key = key_rows[n]
        row = prompt.importances.get(key)
        if row is not None:
            positions = important_positions(
                row, key, config.augment.importance_threshold, skip_first=bos
            )
            if positions:
                items.append((w, AugmentItem(ids, positions), bos, ex))
    if not items:
        return
    weights = [0.0] * len(works)
    for w, _it, _b, _e in items:
        weights[w.col] += 1
    runner.stage = "augment"
    with runner.shared(weights):
        proposed = augmenter.augment([it for _w, it, _b, _e in items])
    aug_jobs: list[Job] = []
    seen: dict[int, set[tuple[int, ...]]] = {}
    for job in jobs:
        seen.setdefault(job.work.col, set()).add(tuple(job.ids))
    for (w, it, bos, ex), new_prompts in zip(items, proposed, strict=True):
        for new_ids in new_prompts:
            if tuple(new_ids) not in seen[w.col]:
                seen[w.col].add(tuple(new_ids))
                k = next((i for i, (a, b) in enumerate(zip(it.token_ids, new_ids, strict=False))
                          if a != b), len(new_ids))
                aug_jobs.append(Job(w, new_ids, bos, ex, (it.token_ids, k)))
                w.stats.augmented_prompts += 1
    runner.stage = "augmented"
    measured = _measure(runner, works, aug_jobs, config, mask, {})
    for prompt, aug in zip(measured, aug_jobs, strict=True):
        if prompt is not None and aug.work.alive:
            aug.work.prompts.append(prompt)


def _finish(
    w: _Work, req: NeuronRequest, runner: LayerRunner, config: N2GConfig, overhead: float
) -> BuildResult:
    nid = str(NeuronId(req.layer, req.neuron))
    graph = (
        build_graph(nid, w.prompts, req.a_max, config.build)
        if w.alive
        else NeuronGraph(nid, fold=config.build.fold)
    )
    if config.improve is not None and w.alive:
        _calibrate(graph, w, req, runner, config.improve)
    depth = runner.lm.n_layers
    for prompt in w.prompts:  # the official code masks every pair, at full depth
        n = len(prompt.tokens)
        w.stats.official_token_layers += (n * n + n) * depth
        w.stats.official_forwards.append(("importance", n + 1, n))
    meter = runner.meters[w.col]
    st = w.stats
    st.paths = sum(node.end_count for node in graph.root.walk())
    st.token_layers, st.padded_token_layers = meter.token_layers, meter.padded_token_layers
    st.forward_seconds = meter.forward_seconds
    st.stage_token_layers = {k: round(v, 1) for k, v in meter.by_stage.items()}
    st.seconds = meter.forward_seconds + overhead
    graph.meta.update({"a_max": req.a_max, "stats": st.as_dict(), "config": _config_dict(config)})
    return BuildResult(graph, st)


def _calibrate(graph: NeuronGraph, w: _Work, req: NeuronRequest, runner: LayerRunner,
               improve: ImproveConfig) -> None:
    """Calibrate on the request's windows (normalised by a_max), model-free."""
    data = req.calibration
    if data is None:
        data = list(zip(req.examples, w.example_acts, strict=False))
    tok = runner.lm.tokenizer
    windows = [(token_pieces(tok, ids), [float(a) / req.a_max for a in acts])
               for ids, acts in data if ids]
    calibrate(graph, windows, improve.for_layer(req.layer))


def _config_dict(config: N2GConfig) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(config)


def build_graphs(
    lm: LoadedModel,
    requests: Sequence[NeuronRequest],
    config: N2GConfig | None = None,
    *,
    progress: Callable[[int], None] | None = None,
    source: ActivationSource | None = None,
) -> list[BuildResult]:
    """Build one graph per request; units of the same layer share every batch.

    `source` gives the units (default: the MLP neurons of `lm`)."""
    cfg = config or N2GConfig()
    source = source or make_source("neurons", lm)
    by_layer: dict[int, list[tuple[int, NeuronRequest]]] = {}
    for i, req in enumerate(requests):
        source.check(req.layer, req.neuron)
        by_layer.setdefault(req.layer, []).append((i, req))
    results: dict[int, BuildResult] = {}
    for layer, reqs in sorted(by_layer.items()):
        results.update(_build_layer(lm, layer, reqs, cfg, progress, source))
    return [results[i] for i in range(len(requests))]
