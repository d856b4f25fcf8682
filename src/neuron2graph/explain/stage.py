"""The explain stage: one explanation per unit and explainer, RUN/explain/explanations/<e>/L_N.json.

`run(ExplainStageConfig(...), run_dir)` is what `n2g explain` and `n2g run` call. Units are
chosen on the driver (explicit ids, or `per_layer` seeded usable units per layer; read-only);
a work item is a block of `concurrency` units of one layer, explained together (one batch of
the local model, or that many requests in flight). Each explainer has its own manifest,
RUN/stages/explain-<explainer>.json, so several explainers coexist in a run; their shared
examples are checked across them (`family.py`), which also migrates runs made before manifests.
The worker writes files only (examples, graphs, explanations); the driver indexes the
explanation text (SQLite FTS5) in `finish`, as `n2g reindex` does.

An unreachable endpoint stops the stage with one line after saving what finished; the files of
a block cut short are kept, and a re-run reuses them (a file under the explainer's folder always
holds the manifest's settings: other settings are refused, `--overwrite` clears the folder).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuron2graph.errors import N2GError
from neuron2graph.explain import family, storage
from neuron2graph.explain.examples import ExampleConfig
from neuron2graph.ids import NeuronId
from neuron2graph.stages.config import result_fields, runtime, scope
from neuron2graph.stages.stage import Stage, StageOutcome, WorkItem, run_stage

if TYPE_CHECKING:
    from neuron2graph.stages.executor import Executor
    from neuron2graph.store.run import Run

EXPLAINERS = ("graph", "tokens", "local", "openai")
LLM_FIELDS = ("model", "max_examples", "max_new_tokens")


@dataclass(frozen=True)
class ExplainStageConfig:
    """Settings of `n2g explain` (docs/explain.md). Fields an explainer does not use are not
    hashed (`ExplainStage.hashed`), so they never refuse a resume."""

    explainer: str = "graph"
    """graph (from the N2G graph), tokens (top activating tokens), local (in-process chat model)
    or openai (an OpenAI-compatible endpoint)."""
    model: str | None = None
    """local: alias, folder or hub name (default smollm2-135m); openai: the endpoint's model."""
    max_examples: int = 20
    """local/openai: train contexts shown in the prompt."""
    max_new_tokens: int = 120
    augmenter: str | None = "causal"
    """graph: the N2G augmenter of graphs built on the train contexts (None: none)."""
    examples: ExampleConfig = field(default_factory=ExampleConfig)
    neurons: tuple[NeuronId, ...] | None = scope(None)
    """Exactly these units (or `layers` and `per_layer`)."""
    layers: tuple[int, ...] | None = scope(None)
    """Layers to draw units from (None: every recorded layer)."""
    per_layer: int = scope(5)
    base_url: str | None = runtime(None)
    concurrency: int = runtime(4)
    """Requests in flight (openai), prompts per batch (local); units per work item."""
    timeout: float = runtime(60.0)
    device: str = runtime("cpu")

    def check(self) -> None:
        if self.explainer not in EXPLAINERS:
            raise N2GError(f"unknown explainer {self.explainer!r}: use graph, tokens, local or "
                           "openai")
        if self.explainer == "openai" and not self.model:
            raise N2GError("--explainer openai needs --model (the endpoint's model name)")
        self.examples.check()


class EndpointStopped(N2GError):
    """The explainer's endpoint stopped answering (the driver words the one-line error)."""


def chat_model(kind: str, model: str | None, base_url: str | None, concurrency: int,
               timeout: float, device: str) -> Any:
    """The chat model of an LLM explainer or judge (loaded in the worker)."""
    from neuron2graph.explain.llm import LocalChat, OpenAIChat

    if kind == "local":
        return LocalChat(model or "smollm2-135m", device=device, batch_size=concurrency)
    if kind == "openai":
        if not model:
            raise N2GError("--explainer/--judge openai needs --model (the endpoint's model name)")
        return OpenAIChat(model, base_url=base_url, concurrency=concurrency, timeout=timeout)
    raise N2GError(f"unknown model backend {kind!r}: use local or openai")


def make_explainer(config: ExplainStageConfig) -> Any:
    from neuron2graph.explain.explainers import GraphExplainer, LLMExplainer, TokensExplainer

    if config.explainer == "graph":
        return GraphExplainer()
    if config.explainer == "tokens":
        return TokensExplainer()
    chat = chat_model(config.explainer, config.model, config.base_url, config.concurrency,
                      config.timeout, config.device)
    return LLMExplainer(chat, config.explainer, max_tokens=config.max_new_tokens,
                        max_examples=config.max_examples)


class ExplainWorker:
    """Holds the explainer (and, for `graph`, the graph builder); explains one block per call."""

    def __init__(self, config: ExplainStageConfig, run_dir: Path) -> None:
        from neuron2graph.explain.pipeline import Graphs
        from neuron2graph.store.run import Run

        self.config = config
        self.run = Run.open(run_dir)
        self.explainer = make_explainer(config)
        self.graphs = (Graphs(self.run, device=config.device, augmenter=config.augmenter)
                       if config.explainer == "graph" else None)

    def _model_seconds(self) -> float:
        return float(getattr(getattr(self.explainer, "model", None), "seconds", 0.0))

    def process(self, item: WorkItem) -> list[dict[str, Any]]:
        from neuron2graph.explain.explainers.base import UnitInput
        from neuron2graph.explain.pipeline import load_examples

        name = self.config.explainer
        rows: dict[NeuronId, dict[str, Any]] = {}
        todo = []
        for nid in item.nids():  # files of a block cut short by a stopped endpoint
            data = storage.read_json(storage.explanation_file(self.run.path, name, nid))
            if isinstance(data, dict):
                rows[nid] = {"status": data.get("status"), "reused": True}
            else:
                todo.append(nid)
        if todo:
            t0, m0 = time.perf_counter(), self._model_seconds()
            units = [(nid, load_examples(self.run, nid, self.config.examples)) for nid in todo]
            built = self.graphs.get(units) if self.graphs is not None else {}
            results = self.explainer.explain([UnitInput(ex, built.get(nid)) for nid, ex in units])
            down = None
            share = (time.perf_counter() - t0) / len(todo)
            for nid, res in zip(todo, results, strict=True):
                if res.extra.get("down"):
                    down = down or res
                    continue
                if not res.seconds:  # an LLM explains a block at once: its share of the wall
                    res.seconds = round(share, 4)
                storage.save(storage.explanation_file(self.run.path, name, nid), res.to_json())
                rows[nid] = {"status": res.status, "reused": False}
            if down is not None:
                raise EndpointStopped(str(down.error))
            model_share = (self._model_seconds() - m0) / len(todo)
            for nid in todo:
                rows[nid].update(seconds=round(share, 4), model_seconds=round(model_share, 4))
        return [rows[n] for n in item.nids()]


class ExplainStage(Stage[ExplainStageConfig]):
    name = "explain"
    unit_label = "unit"

    def manifest_name(self, config: ExplainStageConfig) -> str:
        return family.explain_manifest(config.explainer)

    def hashed(self, config: ExplainStageConfig, run: Run) -> dict[str, Any]:
        out = result_fields(config)
        if config.explainer not in ("local", "openai"):
            for key in LLM_FIELDS:
                out.pop(key)
        elif config.explainer == "local":
            out["model"] = config.model or "smollm2-135m"
        if config.explainer != "graph":
            out.pop("augmenter")
        return out

    def select(self, config: ExplainStageConfig, run: Run) -> list[NeuronId]:
        from neuron2graph.explain.pipeline import select_units

        config.check()
        return select_units(run, config.examples, neurons=config.neurons, layers=config.layers,
                            per_layer=config.per_layer).selected

    def group(self, config: ExplainStageConfig, units: list[NeuronId]) -> list[WorkItem]:
        from neuron2graph.n2g.stage import blocks

        return blocks(units, max(1, config.concurrency))

    def prepare(self, config: ExplainStageConfig, run: Run, *, overwrite: bool) -> None:
        examples = asdict(config.examples)
        family.check_examples(run, examples, overwrite=overwrite)
        folder = storage.explanations_dir(run.path, config.explainer)
        if overwrite:  # this explainer's outputs only (the examples stay when unchanged)
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
            conn = run.db()
            try:
                storage.ensure_tables(conn)
                with conn:
                    conn.execute("DELETE FROM explanations WHERE explainer = ?",
                                 (config.explainer,))
                    conn.execute("DELETE FROM explanations_fts WHERE explainer = ?",
                                 (config.explainer,))
            finally:
                conn.close()
            return
        family.adopt_legacy(run, self.manifest_name(config), self.hashed(config, run), folder,
                            lambda nid: True)

    def make_worker(self, config: ExplainStageConfig, run_dir: Path) -> ExplainWorker:
        return ExplainWorker(config, run_dir)

    def up_to_date(self, config: ExplainStageConfig, run_dir: Path, nid: NeuronId) -> bool:
        """A done unit whose file went missing is redone (the file is per explainer, so this
        hook checks it instead of `unit_file`)."""
        return storage.explanation_file(run_dir, config.explainer, nid).is_file()

    def finish(self, config: ExplainStageConfig, run: Run, outcome: StageOutcome) -> None:
        """Index the explanation text of every planned unit that has a file (FTS5)."""
        conn = run.db()
        try:
            storage.ensure_tables(conn)
            for nid in outcome.planned:
                data = storage.read_json(storage.explanation_file(run.path, config.explainer,
                                                                  nid))
                if isinstance(data, dict) and "unit" in data:
                    storage.index_explanation(conn, data)
        finally:
            conn.close()


STAGE = ExplainStage()


@dataclass
class ExplainResult:
    """What `run` returns: the stage outcome and the figures `n2g explain` prints."""

    outcome: StageOutcome
    units: list[NeuronId]
    excluded: list[dict[str, str]]
    explained: int
    reused: int
    status: dict[str, int]
    seconds: float
    model_seconds: float

    def to_json(self, run_dir: Path, explainer: str) -> dict[str, Any]:
        return {"run": str(run_dir), "explainer": explainer,
                "units": [str(n) for n in self.units], "excluded": self.excluded,
                "explained": self.explained, "reused": self.reused, "status": self.status,
                "seconds": round(self.seconds, 2), "model_seconds": round(self.model_seconds, 2),
                "seconds_per_unit": (round(self.seconds / self.explained, 3)
                                     if self.explained else None)}


def _n_files(run_dir: Path, explainer: str, units: list[NeuronId]) -> int:
    return sum(storage.explanation_file(run_dir, explainer, n).is_file() for n in units)


def run(config: ExplainStageConfig, run_dir: str | Path, *, executor: Executor | None = None,
        overwrite: bool = False, progress: bool = True) -> ExplainResult:
    """Explain the units `config` selects (resumable per unit; see the module docstring)."""
    from neuron2graph.explain.pipeline import select_for_stage

    config.check()
    t0 = time.perf_counter()
    the_run, sel = select_for_stage(run_dir, config)
    chosen = replace(config, neurons=tuple(sel.selected), layers=None)
    before = 0 if overwrite else _n_files(the_run.path, config.explainer, sel.selected)
    try:
        outcome = run_stage(STAGE, chosen, the_run.path, executor, overwrite=overwrite,
                            progress=progress)
    except EndpointStopped as exc:
        now = _n_files(the_run.path, config.explainer, sel.selected)
        raise N2GError(
            f"the endpoint stopped answering ({exc}): {now - before} units explained and saved, "
            f"{len(sel.selected) - now} left; start the server and re-run the same command to "
            "continue") from None
    fresh = [r for r in outcome.rows.values() if not r.get("reused")]
    status: dict[str, int] = {}
    for row in fresh:
        status[str(row["status"])] = status.get(str(row["status"]), 0) + 1
    return ExplainResult(
        outcome=outcome, units=sel.selected, excluded=sel.excluded, explained=len(fresh),
        reused=len(outcome.reused) + len(outcome.rows) - len(fresh), status=status,
        seconds=time.perf_counter() - t0,
        model_seconds=sum(float(r.get("model_seconds", 0.0)) for r in fresh))


__all__ = ["EXPLAINERS", "STAGE", "EndpointStopped", "ExplainResult", "ExplainStage",
           "ExplainStageConfig", "ExplainWorker", "chat_model", "make_explainer", "run"]
