"""The stage contract: plan work items on the driver, process them on workers, finish on the driver.

A stage (build, eval, decode, ...) is a small class:

- `name` and a frozen config dataclass (`stages/config.py` says which fields are hashed);
- `select(config, run)` -> the units wanted, in order; `group(config, units)` -> `WorkItem`s
  (a layer and a block of unit indices that share model batches). `run_stage` drops the units
  the stage manifest lists as done *before* grouping, so a resumed run still gets full blocks;
  `plan(config, run)` is the two together (every wanted unit);
- `make_worker(config, run_dir)` -> a `Worker` whose `process(item)` writes that item's files
  (atomically, one file per unit or per block) and returns one JSON-able row per unit. It is
  called *in the worker process* (the model is loaded there), from a picklable `WorkerSpec`, so
  an executor may run items in other processes or on other machines;
- `finish(config, run, outcome)` on the driver when the items are through: derive the SQLite
  index from the files (`n2g reindex` does the same at any time) and write reports.

Three optional hooks serve stages whose outputs come in families (explain: one manifest per
explainer, all sharing the drawn examples): `manifest_name(config)` (default `name`),
`prepare(config, run, overwrite=)` (driver-side checks across manifests, migrations, clearing;
called after `select`, before the manifest opens) and `up_to_date(config, run_dir, nid)` (a
done unit whose inputs changed since, e.g. a score file older than the explanations it scored).

`run_stage` is the one loop all stages share: open the run, check the stage manifest (resume,
refuse a changed config, or start afresh with `overwrite`), run the remaining items through an
executor, acknowledge each finished item in the manifest, then `finish`.
"""

from __future__ import annotations

import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from neuron2graph.errors import N2GError
from neuron2graph.ids import NeuronId
from neuron2graph.stages.config import result_fields
from neuron2graph.stages.manifest import StageManifest, open_manifest

if TYPE_CHECKING:
    from neuron2graph.stages.executor import Executor
    from neuron2graph.store.run import Run

C = TypeVar("C")


@dataclass(frozen=True)
class WorkItem:
    """One unit of scheduling: a block of units of one layer (they share the model's batches)."""

    layer: int
    units: tuple[int, ...]

    def nids(self) -> list[NeuronId]:
        return [NeuronId(self.layer, u) for u in self.units]

    def __str__(self) -> str:
        return ",".join(str(n) for n in self.nids())


@dataclass
class ItemResult:
    """What a worker hands back for one item: a row per unit, or the error that stopped it."""

    item: WorkItem
    rows: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    exception: BaseException | None = field(default=None, repr=False)
    seconds: float = 0.0


class Worker(Protocol):
    def process(self, item: WorkItem) -> list[dict[str, Any]]:
        """Write the item's files; return one JSON-able row per unit, in `item.units` order."""
        ...


class Stage(ABC, Generic[C]):
    """Base of every stage; subclasses hold no state (they are pickled into workers)."""

    name: ClassVar[str]
    unit_label: ClassVar[str] = "neuron"
    fail_fast: ClassVar[bool] = True
    """True: a worker error stops the stage (the manifest keeps what finished). False: the
    item's units are listed as failed and the others go on (a long evaluation)."""

    def open_run(self, config: C, run_dir: Path) -> Run:
        from neuron2graph.store.run import Run

        return Run.open(run_dir)

    def hashed(self, config: C, run: Run) -> dict[str, Any]:
        """The fields that decide the results: the config's result fields (override to add the
        model weights or resolve an "auto" dtype)."""
        return result_fields(config)

    @abstractmethod
    def select(self, config: C, run: Run) -> list[NeuronId]:
        """The units `config` asks for, in processing order (validate the selection here)."""

    def group(self, config: C, units: list[NeuronId]) -> list[WorkItem]:
        """Work items for `units` (default: one unit per item)."""
        return [WorkItem(n.layer, (n.neuron,)) for n in units]

    def manifest_name(self, config: C) -> str:
        """The manifest's name, RUN/stages/<name>.json (several explainers: explain-<name>)."""
        return self.name

    def prepare(self, config: C, run: Run, *, overwrite: bool) -> None:
        """Driver-side work before the manifest opens (default: nothing)."""

    def up_to_date(self, config: C, run_dir: Path, nid: NeuronId) -> bool:
        """Whether a unit the manifest lists as done still holds (default: yes)."""
        return True

    def plan(self, config: C, run: Run) -> list[WorkItem]:
        return self.group(config, self.select(config, run))

    @abstractmethod
    def make_worker(self, config: C, run_dir: Path) -> Worker: ...

    def unit_file(self, run_dir: Path, nid: NeuronId) -> Path | None:
        """The per-unit output file, checked on resume (None: per-block files; trust the
        manifest)."""
        return None

    def clear(self, run: Run) -> None:
        """Delete this stage's outputs (before an `overwrite` redo)."""

    def finish(self, config: C, run: Run, outcome: StageOutcome) -> None:
        """Driver-side work after the items: index the files, write reports."""


def discard_outputs(run: Run, folder: Path, statement: str) -> None:
    """What a stage's `clear` does: delete its output folder, then its derived rows with
    `statement` (e.g. `DROP TABLE IF EXISTS eval`), so an `overwrite` redo starts from nothing."""
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    conn = run.db()
    try:
        with conn:
            conn.execute(statement)
    finally:
        conn.close()


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs to construct its `Worker` (picklable)."""

    stage: Stage[Any]
    config: Any
    run_dir: Path

    def build(self) -> Worker:
        return self.stage.make_worker(self.config, self.run_dir)


@dataclass
class StageOutcome:
    stage: str
    config_hash: str
    run_dir: Path
    planned: list[NeuronId]
    """Every unit the config selected (done before or not)."""
    rows: dict[NeuronId, dict[str, Any]]
    """Rows of the units processed by this call (reused units are not re-read)."""
    reused: list[NeuronId]
    """Planned units already done before this call."""
    failed: list[dict[str, Any]] = field(default_factory=list)
    pending: list[NeuronId] = field(default_factory=list)
    """Planned units not processed because `max_seconds` ran out (a re-run goes on)."""
    wall_s: float = 0.0
    manifest: StageManifest | None = field(default=None, repr=False)

    @property
    def computed(self) -> int:
        return len(self.rows)


def _split_done(stage: Stage[Any], config: Any, manifest: StageManifest, run_dir: Path,
                units: list[NeuronId]) -> tuple[list[NeuronId], list[NeuronId]]:
    """(units to do, units already done): done = acknowledged in the manifest, file present and
    still up to date."""
    todo: list[NeuronId] = []
    done: list[NeuronId] = []
    for nid in units:
        file = stage.unit_file(run_dir, nid)
        if (manifest.is_done(nid) and (file is None or file.is_file())
                and stage.up_to_date(config, run_dir, nid)):
            done.append(nid)
        else:
            todo.append(nid)
    return todo, done


def progress_bar(total: int, desc: str, unit: str, enabled: bool) -> Any:
    """A tqdm bar on stderr; in a log file (not a tty) it updates rarely instead of flooding."""
    from tqdm.auto import tqdm

    tty = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled or total == 0,
                mininterval=0.5 if tty else 30.0, file=sys.stderr, dynamic_ncols=tty)


def run_stage(
    stage: Stage[C],
    config: C,
    run_dir: str | Path,
    executor: Executor | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    max_seconds: float | None = None,
) -> StageOutcome:
    """Run `stage` on a run directory: resume, refuse a changed config, or redo with overwrite.

    Items go through `executor` (default: `LocalExecutor`, serial, in this process). Each
    finished item is acknowledged in RUN/stages/<name>.json before the next result is read, so
    a killed run resumes after its last acknowledged item. With `max_seconds`, no new item
    starts after that many seconds; the rest is reported as pending.
    """
    from neuron2graph.stages.executor import LocalExecutor

    start = time.perf_counter()
    run = stage.open_run(config, Path(run_dir).expanduser())
    units = stage.select(config, run)  # first: a bad selection is reported before anything else
    stage.prepare(config, run, overwrite=overwrite)
    name = stage.manifest_name(config)
    manifest = open_manifest(run.path, name, stage.hashed(config, run), overwrite=overwrite)
    if overwrite:
        stage.clear(run)
    left, reused = _split_done(stage, config, manifest, run.path, units)
    for nid in left:  # files gone (or stale) since they were acknowledged: they are redone
        manifest.forget(nid.layer, [nid.neuron])
    todo = stage.group(config, left)
    outcome = StageOutcome(stage=name, config_hash=manifest.config_hash, run_dir=run.path,
                           planned=units, rows={}, reused=reused, manifest=manifest)
    manifest.status = "running"
    manifest.save()
    stop: Callable[[], bool] | None = None
    if max_seconds is not None:
        limit = max_seconds

        def stop() -> bool:
            return time.perf_counter() - start > limit

    finished: set[WorkItem] = set()
    if todo:
        executor = executor or LocalExecutor()
        bar = progress_bar(sum(len(i.units) for i in todo), name, stage.unit_label, progress)
        try:
            for res in executor.run(WorkerSpec(stage, config, run.path), todo, stop=stop):
                finished.add(res.item)
                bar.update(len(res.item.units))
                if res.error is not None:
                    for nid in res.item.nids():
                        outcome.failed.append({"neuron": str(nid), "reason": res.error})
                        manifest.failed[str(nid)] = res.error
                    manifest.save()
                    if stage.fail_fast:
                        if res.exception is not None:
                            raise res.exception
                        raise N2GError(f"{name} failed on {res.item}: {res.error}")
                    bar.write(f"warning: {res.item}: {res.error}", file=sys.stderr)
                    continue
                if len(res.rows) != len(res.item.units):
                    raise N2GError(f"{name} returned {len(res.rows)} rows for "
                                   f"{len(res.item.units)} units of {res.item}")
                for nid, row in zip(res.item.nids(), res.rows, strict=True):
                    outcome.rows[nid] = row
                manifest.mark_done(res.item.layer, list(res.item.units))
                manifest.save()
        finally:
            bar.close()
    outcome.pending = [nid for item in todo if item not in finished for nid in item.nids()]
    complete = not outcome.pending and not outcome.failed
    manifest.status = "complete" if complete else "partial"
    stage.finish(config, run, outcome)
    outcome.wall_s = time.perf_counter() - start
    manifest.save()
    return outcome


__all__ = [
    "ItemResult",
    "Stage",
    "StageOutcome",
    "WorkItem",
    "Worker",
    "WorkerSpec",
    "progress_bar",
    "run_stage",
]
