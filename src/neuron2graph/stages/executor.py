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


EXECUTORS = ("local", "ray")
"""The executors `--executor` accepts; `make_executor` is the one place that chooses them."""


def make_executor(name: str, *, workers: int | None = None, address: str | None = None,
                  cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0) -> Executor:
    """The executor called `name` (`local` or `ray`); the Ray options are refused with `local`.

    `address`: None or "local" starts a local Ray cluster; "auto" joins this machine's
    cluster; "ray://HOST:PORT" connects a client. Ray is imported only for `ray`.
    """
    from neuron2graph.errors import N2GError

    if name == "local":
        if workers not in (None, 1) or address is not None:
            raise N2GError("--workers and --address need --executor ray (local runs serially)")
        return LocalExecutor()
    if name == "ray":
        from neuron2graph.stages.ray_executor import RayExecutor

        return RayExecutor(workers or 2, address=None if address in (None, "local") else address,
                           cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker)
    raise N2GError(f"unknown --executor {name!r}: use one of {', '.join(EXECUTORS)}")


def close_executor(executor: Executor) -> None:
    """Release what the executor started (a local Ray cluster); a no-op for others."""
    close = getattr(executor, "close", None)
    if callable(close):
        close()


__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "close_executor", "make_executor",
           "process_item"]
