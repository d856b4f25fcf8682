"""Executors run a stage's work items: where, and how many at once.

The contract (`Executor.run`): given a picklable `WorkerSpec` and the items still to do, yield one
`ItemResult` per item as it finishes, in any order. Construct workers from the spec where the
items run (`spec.build()` loads the model there), and build none when there is nothing to do.
Catch a worker's exception into `ItemResult.error` (the driver decides whether it stops the
stage); check `stop()` before starting each item. Executors never touch the stage manifest or
the SQLite index: the driver (`run_stage`) acknowledges results and derives the index.

`LocalExecutor` runs items one after the other in this process. A Ray executor (the scale
issue) fits the same interface: one actor per GPU builds its worker from the spec once and
processes items sent to it; results stream back as they complete.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence

from neuron2graph.stages.stage import ItemResult, Worker, WorkerSpec, WorkItem


class Executor(ABC):
    @abstractmethod
    def run(
        self,
        spec: WorkerSpec,
        items: Sequence[WorkItem],
        *,
        stop: Callable[[], bool] | None = None,
    ) -> Iterator[ItemResult]:
        """Process `items`; yield a result per item as each finishes (any order)."""


def process_item(worker: Worker, item: WorkItem) -> ItemResult:
    """Run one item on a worker, turning an exception into an error result (executors share
    this, so a failure reads the same whichever executor ran the item)."""
    t0 = time.perf_counter()
    try:
        rows = worker.process(item)
    except Exception as exc:  # reported to the driver, which decides whether to stop
        return ItemResult(item, error=f"{type(exc).__name__}: {str(exc)[:200]}", exception=exc,
                          seconds=time.perf_counter() - t0)
    return ItemResult(item, rows=list(rows), seconds=time.perf_counter() - t0)


class LocalExecutor(Executor):
    """Serial, in this process: one worker built on first need, items in plan order."""

    def run(
        self,
        spec: WorkerSpec,
        items: Sequence[WorkItem],
        *,
        stop: Callable[[], bool] | None = None,
    ) -> Iterator[ItemResult]:
        worker: Worker | None = None
        for item in items:
            if stop is not None and stop():
                return
            if worker is None:
                worker = spec.build()
            yield process_item(worker, item)


__all__ = ["Executor", "LocalExecutor", "process_item"]
