"""The score stage: every explanation of a unit, its graph and the lookups, on the same examples.

`run(ScoreStageConfig(...), run_dir)` is what `n2g score` and `n2g run` call. A work item is one
unit; the worker writes RUN/explain/scores/L_N.json (with a `signature`: the scorers and the
explanation texts it scored) and nothing else; the driver writes RUN/explain/table.md and
derives the `explanation_scores` rows in `finish`. Resume and the refusal of other scorers,
judges or example settings come from RUN/stages/score.json; a unit whose explanations changed
since it was scored (a new explainer ran, or one was redone) is scored again (`up_to_date`).
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
from neuron2graph.stages.manifest import read_manifest
from neuron2graph.stages.stage import Stage, StageOutcome, WorkItem, run_stage
from neuron2graph.store.atomic import write_text_atomic

if TYPE_CHECKING:
    from neuron2graph.stages.executor import Executor
    from neuron2graph.store.run import Run

DEFAULT_SCORERS = ("detection", "fuzz", "simulation", "embedding")


@dataclass(frozen=True)
class ScoreStageConfig:
    """Settings of `n2g score` (docs/explain.md). Fields no chosen scorer uses are not hashed."""

    scorers: tuple[str, ...] = DEFAULT_SCORERS
    judge: str = "local"
    """Who judges sentences for detection/fuzz/simulation: local, openai or none."""
    judge_model: str | None = None
    """local: alias/folder (default smollm2-135m); openai: the endpoint's model name."""
    surprisal_model: str = "smollm2-135m"
    """Base LM of the surprisal scorer (in-process)."""
    intervention_strength: float = 4.0
    """Intervention: the unit is steered to this many times its recorded max activation."""
    graph: bool = True
    """Also score the N2G graph built on the train contexts."""
    augmenter: str | None = "causal"
    """The augmenter of graphs built here (a graph `n2g explain` built is reused)."""
    examples: ExampleConfig = field(default_factory=ExampleConfig)
    neurons: tuple[NeuronId, ...] | None = scope(None)
    layers: tuple[int, ...] | None = scope(None)
    per_layer: int = scope(5)
    base_url: str | None = runtime(None)
    concurrency: int = runtime(8)
    timeout: float = runtime(60.0)
    device: str = runtime("cpu")

    def check(self) -> None:
        from neuron2graph.explain.scoring import check_scorers

        check_scorers(self.scorers)
        if self.judge not in ("local", "openai", "none"):
            raise N2GError(f"unknown judge {self.judge!r}: use local, openai or none")
        if self.intervention_strength == 0:
            raise N2GError("--intervention-strength 0 steers nothing: use e.g. 4 (x a_max)")
        self.examples.check()

    def judged(self) -> bool:
        from neuron2graph.explain.scoring import JUDGED

        return self.judge != "none" and any(s in JUDGED for s in self.scorers)

    def judge_name(self) -> str | None:
        if not self.judged():
            return None
        return self.judge_model or ("smollm2-135m" if self.judge == "local" else None)


def signature(config: ScoreStageConfig, explanations: dict[str, str | None]) -> dict[str, Any]:
    """What a scores file was computed from (the same keys as runs made before manifests, so
    their files are adopted when they match)."""
    sig: dict[str, Any] = {
        "scorers": list(config.scorers), "judge": config.judge_name(),
        "lm": config.surprisal_model if "surprisal" in config.scorers else None,
        "graph": config.graph, "explanations": explanations}
    if "intervention" in config.scorers:
        sig["intervention_strength"] = config.intervention_strength
    return sig


def current_signature(config: ScoreStageConfig, run_dir: Path, nid: NeuronId) -> dict[str, Any]:
    from neuron2graph.explain.pipeline import load_explanations

    return signature(config, {e.explainer: e.text for e in load_explanations(run_dir, nid)})


class ScoreWorker:
    """Holds the judge, the surprisal LM and the run's model (graphs, steering), all lazy."""

    def __init__(self, config: ScoreStageConfig, run_dir: Path) -> None:
        from neuron2graph.explain.pipeline import Graphs
        from neuron2graph.explain.scoring import Scorers
        from neuron2graph.explain.stage import chat_model
        from neuron2graph.store.run import Run

        c = config
        self.config = c
        self.run = Run.open(run_dir)
        self.sc = Scorers(tuple(c.scorers))
        if c.judged():
            self.sc.judge = chat_model(c.judge, c.judge_model, c.base_url, c.concurrency,
                                       c.timeout, c.device)
        if "surprisal" in c.scorers:
            from neuron2graph.explain.llm import LocalChat

            same = c.judge == "local" and self.sc.judge is not None and (
                c.judge_model or "smollm2-135m") == c.surprisal_model
            self.sc.lm = self.sc.judge if same else LocalChat(c.surprisal_model, device=c.device)
        self.graphs = Graphs(self.run, device=c.device, augmenter=c.augmenter)
        if "intervention" in c.scorers:
            from neuron2graph.explain.scorers.intervention import InterventionScorer

            lm, source = self.graphs.loaded()
            self.sc.steer = InterventionScorer(lm, source, strength=c.intervention_strength)

    def process(self, item: WorkItem) -> list[dict[str, Any]]:
        from neuron2graph.explain.pipeline import load_examples, load_explanations
        from neuron2graph.explain.scorers.bench import EndpointDown
        from neuron2graph.explain.scoring import score_unit

        rows = []
        for nid in item.nids():
            ex = load_examples(self.run, nid, self.config.examples)
            expls = load_explanations(self.run.path, nid)
            graph = self.graphs.get([(nid, ex)])[nid] if self.config.graph else None
            try:
                row = score_unit(ex, graph, expls, self.sc, self.config.examples)
            except EndpointDown as exc:
                raise JudgeStopped(str(exc)) from None
            row["signature"] = signature(self.config, {e.explainer: e.text for e in expls})
            storage.save(storage.scores_file(self.run.path, nid), row)
            rows.append({"failed": row["failed"]})
        return rows


class JudgeStopped(N2GError):
    """The judge's endpoint stopped answering (the driver words the one-line error)."""


class ScoreStage(Stage[ScoreStageConfig]):
    name = family.SCORE
    unit_label = "unit"

    def hashed(self, config: ScoreStageConfig, run: Run) -> dict[str, Any]:
        out = result_fields(config)
        if not config.judged():
            out.pop("judge")
            out.pop("judge_model")
        else:
            out["judge_model"] = config.judge_name()
        if "surprisal" not in config.scorers:
            out.pop("surprisal_model")
        if "intervention" not in config.scorers:
            out.pop("intervention_strength")
        if not config.graph and "intervention" not in config.scorers:
            out.pop("augmenter")
        return out

    def select(self, config: ScoreStageConfig, run: Run) -> list[NeuronId]:
        from neuron2graph.explain.pipeline import select_units

        config.check()
        return select_units(run, config.examples, neurons=config.neurons, layers=config.layers,
                            per_layer=config.per_layer).selected

    def prepare(self, config: ScoreStageConfig, run: Run, *, overwrite: bool) -> None:
        family.check_examples(run, asdict(config.examples), overwrite=overwrite)
        if not overwrite:  # (with overwrite, run_stage clears the scores: `clear`)
            family.adopt_legacy(
                run, family.SCORE, self.hashed(config, run), storage.scores_dir(run.path),
                lambda nid: self.up_to_date(config, run.path, nid))

    def clear(self, run: Run) -> None:
        import shutil

        shutil.rmtree(storage.scores_dir(run.path), ignore_errors=True)
        (storage.table_file(run.path)).unlink(missing_ok=True)
        conn = run.db()
        try:
            with conn:
                conn.execute("DROP TABLE IF EXISTS explanation_scores")
        finally:
            conn.close()

    def make_worker(self, config: ScoreStageConfig, run_dir: Path) -> ScoreWorker:
        return ScoreWorker(config, run_dir)

    def unit_file(self, run_dir: Path, nid: NeuronId) -> Path | None:
        return storage.scores_file(run_dir, nid)

    def up_to_date(self, config: ScoreStageConfig, run_dir: Path, nid: NeuronId) -> bool:
        """Scored from the explanations the unit holds now (else it is scored again)."""
        old = storage.read_json(storage.scores_file(run_dir, nid))
        return isinstance(old, dict) and old.get("signature") == current_signature(
            config, run_dir, nid)

    def finish(self, config: ScoreStageConfig, run: Run, outcome: StageOutcome) -> None:
        """RUN/explain/table.md over the planned units, and their `explanation_scores` rows."""
        from neuron2graph.explain.scoring import layer_table, markdown

        rows = planned_rows(run.path, outcome.planned)
        conn = run.db()
        try:
            storage.ensure_tables(conn)
            for row in rows:
                storage.index_scores(conn, row)
        finally:
            conn.close()
        write_text_atomic(storage.table_file(run.path),
                          markdown(layer_table(rows)) + "\n")


def planned_rows(run_dir: Path, units: list[NeuronId]) -> list[dict[str, Any]]:
    out = []
    for nid in units:
        row = storage.read_json(storage.scores_file(run_dir, nid))
        if isinstance(row, dict) and "methods" in row:
            out.append(row)
    return out


STAGE = ScoreStage()


@dataclass
class ScoreResult:
    """What `run` returns: the stage outcome, the units' score rows and the per-layer table."""

    outcome: StageOutcome
    rows: list[dict[str, Any]]
    excluded: list[dict[str, str]]
    seconds: float

    @property
    def failed_calls(self) -> dict[str, int]:
        failed: dict[str, int] = {}
        for row in self.rows:
            for k, v in row.get("failed", {}).items():
                failed[k] = failed.get(k, 0) + v
        return failed

    def table(self) -> dict[int, dict[str, dict[str, Any]]]:
        from neuron2graph.explain.scoring import layer_table

        return layer_table(self.rows)


def run(config: ScoreStageConfig, run_dir: str | Path, *, executor: Executor | None = None,
        overwrite: bool = False, progress: bool = True) -> ScoreResult:
    """Score the units `config` selects (resumable per unit; see the module docstring)."""
    from neuron2graph.explain.pipeline import select_for_stage

    config.check()
    t0 = time.perf_counter()
    the_run, sel = select_for_stage(run_dir, config)
    chosen = replace(config, neurons=tuple(sel.selected), layers=None)
    try:
        outcome = run_stage(STAGE, chosen, the_run.path, executor, overwrite=overwrite,
                            progress=progress)
    except JudgeStopped as exc:
        manifest = read_manifest(the_run.path, family.SCORE)
        done = sum(manifest.is_done(n) for n in sel.selected) if manifest else 0
        raise N2GError(
            f"the judge endpoint stopped answering during {exc}: {done} units scored and saved; "
            "start the server and re-run the same command to continue") from None
    return ScoreResult(outcome=outcome, rows=planned_rows(the_run.path, sel.selected),
                       excluded=sel.excluded, seconds=time.perf_counter() - t0)


__all__ = ["DEFAULT_SCORERS", "STAGE", "JudgeStopped", "ScoreResult", "ScoreStage",
           "ScoreStageConfig", "ScoreWorker", "run", "signature"]
