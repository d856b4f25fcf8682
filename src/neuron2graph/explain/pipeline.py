"""What the explain and score stages share: unit selection, examples, graphs, explanations.

The stages themselves are `explain/stage.py` (`n2g explain`) and `explain/score_stage.py`
(`n2g score`). Every unit's examples, graph, explanations and scores are files (see `storage`),
written as soon as they exist. Models load lazily: explaining with `graph` loads the run's model
only when a graph is missing; `tokens` never loads one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from neuron2graph.errors import N2GError
from neuron2graph.explain import storage
from neuron2graph.explain.examples import ExampleConfig, UnitExamples, draw_examples
from neuron2graph.explain.explainers.base import Explanation
from neuron2graph.ids import NeuronId


@dataclass
class Selection:
    selected: list[NeuronId]
    excluded: list[dict[str, str]] = field(default_factory=list)


def select_units(run: Any, cfg: ExampleConfig, *, neurons: Sequence[NeuronId] | None = None,
                 layers: Sequence[int] | None = None, per_layer: int = 5) -> Selection:
    """Explicit units, or `per_layer` seeded random units per layer that have examples to use.

    Read-only (examples are drawn to test a unit but saved by the stage's workers), so a command
    refused afterwards for a changed config has written nothing."""
    from neuron2graph.evaluate.protocol import layer_order

    sel = Selection([])

    def usable(nid: NeuronId) -> bool:
        try:
            load_examples(run, nid, cfg, save=False)
        except N2GError as exc:
            sel.excluded.append({"neuron": str(nid), "reason": str(exc)})
            return False
        return True

    if neurons:
        for nid in neurons:
            run.check(nid)
            if usable(nid):
                sel.selected.append(nid)
        return sel
    for layer in layers if layers is not None else run.layers:
        run.check((layer, 0))
        taken = 0
        for neuron in layer_order(run.n_neurons, layer, cfg.seed):
            if taken >= per_layer:
                break
            nid = NeuronId(layer, neuron)
            if usable(nid):
                sel.selected.append(nid)
                taken += 1
    return sel



def select_for_stage(run_dir: str | Path, config: Any) -> tuple[Any, Selection]:
    """Open the run and pick the units an explain or score config asks for (its `examples`,
    `neurons`, `layers`, `per_layer`); one line when none is usable. Shared by both stages'
    `run()` so they select, and refuse, identically."""
    from neuron2graph.store.run import Run

    the_run = Run.open(Path(run_dir).expanduser())
    sel = select_units(the_run, config.examples, neurons=config.neurons, layers=config.layers,
                       per_layer=config.per_layer)
    if not sel.selected:
        raise N2GError(f"no usable unit ({len(sel.excluded)} excluded: "
                       f"{sel.excluded[0]['reason'] if sel.excluded else 'none recorded'})")
    return the_run, sel

def load_examples(run: Any, nid: NeuronId, cfg: ExampleConfig, *,
                  save: bool = True) -> UnitExamples:
    """The unit's examples from RUN/explain/examples, drawn (and saved) on first use."""
    path = storage.examples_file(run.path, nid)
    data = storage.read_json(path)
    if isinstance(data, dict) and data.get("config") == asdict(cfg):
        return UnitExamples.from_json(data["examples"])
    if run.a_max(nid) <= 0:
        raise N2GError(f"unit {nid} never fires on the recorded corpus")
    ex = draw_examples(run, nid, cfg)
    if save:
        storage.save(path, {"config": asdict(cfg), "examples": ex.to_json()})
    return ex


class Graphs:
    """N2G graphs built on each unit's train contexts (the run's model loads on first need)."""

    def __init__(self, run: Any, *, device: str = "cpu", augmenter: str | None = "causal") -> None:
        self.run = run
        self.device = device
        self.augmenter = augmenter
        self._build: Callable[[list[Any]], list[Any]] | None = None
        self._loaded: tuple[Any, Any] | None = None
        self.seconds = 0.0

    def loaded(self) -> tuple[Any, Any]:
        """(the run's model, its unit source), loaded once: graphs and the intervention scorer
        share them."""
        if self._loaded is None:
            from neuron2graph.evaluate.builder import load_run_model
            from neuron2graph.units import source_for_run

            lm = load_run_model(self.run, device=self.device)
            self._loaded = (lm, source_for_run(self.run, lm))
        return self._loaded

    def _builder(self) -> Callable[[list[Any]], list[Any]]:
        if self._build is None:
            from neuron2graph.evaluate.builder import n2g_config
            from neuron2graph.n2g.pipeline import build_graphs

            lm, source = self.loaded()
            cfg = n2g_config(augmenter=self.augmenter)
            self._build = lambda reqs: [r.graph for r in build_graphs(lm, reqs, cfg,
                                                                      source=source)]
        return self._build

    def get(self, units: Sequence[tuple[NeuronId, UnitExamples]]) -> dict[NeuronId, Any]:
        from neuron2graph.n2g.graph import NeuronGraph
        from neuron2graph.n2g.pipeline import NeuronRequest

        out: dict[NeuronId, Any] = {}
        todo = []
        for nid, ex in units:
            path = storage.graph_file(self.run.path, nid)
            if path.is_file():
                out[nid] = NeuronGraph.load(path)
            else:
                todo.append((nid, ex))
        if todo:
            t0 = time.perf_counter()
            reqs = [NeuronRequest(layer=nid.layer, neuron=nid.neuron,
                                  examples=[c.token_ids for c in ex.train], a_max=ex.a_max,
                                  acts=[c.acts for c in ex.train]) for nid, ex in todo]
            for (nid, _), graph in zip(todo, self._builder()(reqs), strict=True):
                graph.save(storage.graph_file(self.run.path, nid))
                out[nid] = graph
            self.seconds += time.perf_counter() - t0
        return out


def load_explanations(run_dir: Path, nid: NeuronId) -> list[Explanation]:
    out = []
    for name in storage.explainers_done(run_dir):
        data = storage.read_json(storage.explanation_file(run_dir, name, nid))
        if isinstance(data, dict):
            out.append(Explanation.from_json(data))
    return out


__all__ = ["Graphs", "Selection", "load_examples", "load_explanations", "select_units"]
