"""`RayExecutor`: a stage's work items on Ray actors, one model replica per actor.

Why Ray: users who outgrow one machine need an existing distributed engine, not a home-made one.
The same command runs on one machine (a local cluster started here) or on a cluster
(`--address auto` on a head node, or `ray://HOST:10001` from outside). docs/scale.md.

How it maps to the stage contract (stages/executor.py):

- one actor per worker; each builds its `Worker` from the picklable `WorkerSpec` once, in the
  actor process (the model is loaded there once, not per item);
- items are `(layer, block of units)`; each actor has one item in flight and gets the next item
  as soon as it hands a result back, so a slow actor never holds a queue of work;
- results stream back to the driver as they finish; the files were already written atomically
  by the worker, the driver (`run_stage`) acknowledges them in the manifest and builds the index;
- actors have `max_restarts` and `max_task_retries`: a killed worker process is restarted (the
  model reloaded) and its item retried, so nothing is lost. An item that still fails comes back
  as an error result, like a worker exception under `LocalExecutor`.

`ray` is imported only when a run starts, so nothing else in the package imports it.
"""

from __future__ import annotations

import os
import pickle
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from neuron2graph.errors import N2GError
from neuron2graph.stages.executor import Executor, process_item
from neuron2graph.stages.stage import ItemResult, Worker, WorkerSpec, WorkItem


class ItemActor:
    """The body of one Ray actor: a worker built once from the spec, items processed in turn."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.worker: Worker | None = None

    def pid(self) -> int:
        return os.getpid()

    def process(self, item: WorkItem) -> ItemResult:
        if self.worker is None:
            self.worker = self.spec.build()
        res = process_item(self.worker, item)
        if res.exception is not None:  # ship the exception back only if it survives pickling
            try:
                pickle.dumps(res.exception)
            except Exception:
                res.exception = None
        return res


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {(text[0] if text else '')[:200]}"


class RayExecutor(Executor):
    """Run items on `workers` Ray actors (see the module docstring).

    `address`: None starts a local cluster in this process (stopped by `close()`); "auto" joins
    the cluster this machine belongs to; "ray://HOST:PORT" connects a client; "HOST:PORT" is a
    GCS address. `cpus_per_worker` may be fractional: on a 2-core machine two `num_cpus=1`
    actors take every CPU and starve other Ray tasks.
    """

    def __init__(self, workers: int = 2, *, address: str | None = None,
                 cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0,
                 max_restarts: int = 3, init_kwargs: dict[str, Any] | None = None) -> None:
        if workers < 1:
            raise N2GError("--workers must be at least 1")
        if cpus_per_worker <= 0 or gpus_per_worker < 0:
            raise N2GError("--cpus-per-worker must be > 0 and --gpus-per-worker >= 0")
        self.workers = workers
        self.address = address
        self.cpus_per_worker = cpus_per_worker
        self.gpus_per_worker = gpus_per_worker
        self.max_restarts = max_restarts
        self.init_kwargs = dict(init_kwargs or {})
        self.started_cluster = False
        self.actors: list[Any] = []
        self.pids: list[int] = []
        """Process id of each actor (as first started; a restarted actor gets a new one)."""
        self.busy: dict[int, WorkItem] = {}
        """Actor index -> the item it is processing now (for tests and progress)."""

    def _ensure_ray(self) -> Any:
        try:
            import ray
        except ImportError:
            raise N2GError("--executor ray needs Ray: pip install 'neuron2graph[ray]'") from None
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
            kwargs.update(self.init_kwargs)
            if self.address is not None:
                kwargs.pop("num_cpus", None)
                kwargs.pop("num_gpus", None)
                kwargs.pop("include_dashboard", None)
            try:
                ray.init(address=self.address, **kwargs)
            except ConnectionError as exc:
                raise N2GError(f"cannot reach the Ray cluster at {self.address}: {_short(exc)}; "
                               "start one with `ray start --head` or drop --address") from None
            self.started_cluster = self.address is None
        return ray

    def _start_actors(self, ray: Any, spec: WorkerSpec, n: int) -> None:
        actor_cls = ray.remote(num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker,
                               max_restarts=self.max_restarts,
                               max_task_retries=self.max_restarts)(ItemActor)
        self.actors = [actor_cls.remote(spec) for _ in range(n)]
        self.pids = list(ray.get([a.pid.remote() for a in self.actors]))

    def run(
        self,
        spec: WorkerSpec,
        items: Sequence[WorkItem],
        *,
        stop: Callable[[], bool] | None = None,
    ) -> Iterator[ItemResult]:
        if not items:
            return
        ray = self._ensure_ray()
        self._start_actors(ray, spec, min(self.workers, len(items)))
        queue = deque(items)
        pending: dict[Any, tuple[int, WorkItem]] = {}

        def submit(index: int) -> None:
            if queue and not (stop is not None and stop()):
                item = queue.popleft()
                pending[self.actors[index].process.remote(item)] = (index, item)
                self.busy[index] = item
            else:
                self.busy.pop(index, None)

        try:
            for index in range(len(self.actors)):
                submit(index)
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                index, item = pending.pop(ready[0])
                try:
                    res = ray.get(ready[0])
                except ray.exceptions.RayError as exc:  # the actor died past its restarts
                    res = ItemResult(item, error=_short(exc))
                submit(index)
                yield res
        finally:
            for actor in self.actors:
                ray.kill(actor, no_restart=True)
            self.actors, self.busy = [], {}

    def close(self) -> None:
        """Stop the local cluster this executor started (a joined cluster is left running)."""
        if self.started_cluster:
            import ray

            ray.shutdown()
            self.started_cluster = False


__all__ = ["ItemActor", "RayExecutor"]
