"""Folding activations into the running state, layer by layer, on worker threads, overlapped
with the next batch's forward (the recorder's pipeline).

`fold_batch` folds one batch now (the sequential path). `Folder.folded` is the pipeline: while
batch i is folded on the worker threads, the caller's iterator computes the forward of batch
i + 1; batch i is handed back only once its fold is complete, so whatever the caller does then
(progress, checkpoints, the resume test's kill) sees a state with no fold in flight. The fold
runs the same ops in the same order on the same per-op thread count either way, so the state,
and every file written from it, is byte-identical to the sequential path's
(tests/integration/test_record_pipeline.py).

On a GPU the forward runs on the device and the host's cores would otherwise idle during it,
so `record()` overlaps there. On a CPU it does not (`record()` folds in its own thread, the
layers on two threads): the forward already uses every core, and measured on 2 cores the overlap
made `record()` slower (0.66-0.68 of the bare forward against 0.82 without, docs/record.md) — the
fold threads take cores from the forward's thread team, whose parallel regions wait for their
slowest member, and hold the GIL the forward's Python needs between ops. Lowering the fold
threads' priority (nice 10 or 19) did not help: a starved fold thread holding the GIL stalls the
forward all the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from types import TracebackType

import torch

from neuron2graph.errors import N2GError
from neuron2graph.record.state import Batch, LayerState, SampleState


def _check_finite(acts: torch.Tensor, batch: Batch, layer: int) -> None:
    bad = (~torch.isfinite(acts)).any(0).any(0).nonzero().squeeze(1).tolist()
    shown = ", ".join(f"{layer}:{n}" for n in bad[:8]) + (" ..." if len(bad) > 8 else "")
    first, last = int(batch.window[0]), int(batch.window[-1])
    raise N2GError(
        f"non-finite activations (NaN or inf) for {len(bad)} neuron(s) ({shown}) in windows "
        f"{first}..{last}: nothing was stored for them; check the model's weights or use "
        "--dtype fp32"
    )


def _per_op_threads() -> int:
    """Torch threads per fold op: half of the process's (one on a 2-core machine). These are
    memory-bound reductions and scatters; on a busy machine two threads per small op stalled
    on each other (several times slower), and a fixed count keeps every float sum the same."""
    return max(1, torch.get_num_threads() // 2)


def fold_batch(
    states: dict[int, LayerState], sample: SampleState, batch: Batch,
    acts: dict[int, torch.Tensor], pool: Executor | None = None,
) -> None:
    """Fold one batch's activations into the running state, now.

    With a `pool` (`fold_pool`), the layers are folded concurrently (each layer's state is its
    own, and torch releases the GIL in its kernels); the per-op thread count, and therefore
    every result, is the same either way.
    """
    threads = torch.get_num_threads()
    per_op = _per_op_threads()
    torch.set_num_threads(per_op)
    try:
        moves = sample.offer(batch)
        if pool is None or len(states) < 2:
            for layer, st in states.items():
                _fold_layer(layer, st, batch, acts[layer], moves)
            return
        _wait_in_order([pool.submit(_fold_layer, layer, st, batch, acts[layer], moves, per_op)
                        for layer, st in states.items()])
    finally:
        torch.set_num_threads(threads)


def _wait_in_order(futures: Sequence[Future[None]]) -> None:
    wait(futures)
    for future in futures:  # the first failing layer, in layer order, as sequentially
        future.result()


def _fold_layer(
    layer: int, st: LayerState, batch: Batch, a: torch.Tensor, moves: list[tuple[int, int]],
    threads: int | None = None,
) -> None:
    if threads is not None:  # a pool thread: its own torch thread count
        torch.set_num_threads(threads)
    win_max = st.window_max(a, batch)
    total = st.update_stats(a, batch, win_max)
    if not bool(torch.isfinite(total).all()):
        _check_finite(a, batch, layer)
    st.update_top(a, batch, win_max)
    st.update_sample(a, win_max, moves)


def _fold_workers(n_layers: int) -> int:
    threads = torch.get_num_threads()
    return min(n_layers, max(1, threads // _per_op_threads()))


@contextmanager
def fold_pool(n_layers: int) -> Iterator[Executor | None]:
    """Threads that fold layers concurrently: as many as torch has threads beyond one op's share
    (2 on a 2-core machine), at most one per layer; None when that is a single thread."""
    workers = _fold_workers(n_layers)
    if workers < 2:
        yield None
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="n2g-fold") as pool:
        yield pool


class Folder:
    """Folds batches into `states` and `sample`: in the background, overlapped with the next
    forward (`background=True`), or in the caller's thread, the layers on `fold_pool` threads.

    Use as a context manager; `folded(forwards)` yields each batch once it is folded.
    """

    def __init__(
        self, states: dict[int, LayerState], sample: SampleState, *, background: bool
    ) -> None:
        self.states, self.sample, self.background = states, sample, background
        self.per_op = _per_op_threads()
        self._pending: list[Future[None]] = []
        workers = _fold_workers(len(states))
        self._pool: ThreadPoolExecutor | None = None
        if background or workers >= 2:
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="n2g-fold")

    def __enter__(self) -> Folder:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Wait for a fold still in flight (its error, if any, is dropped: the caller is already
        failing), then end the threads (their scratch buffers go with them)."""
        if self._pending:
            wait(self._pending)
            self._pending = []
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def submit(self, batch: Batch, acts: dict[int, torch.Tensor]) -> None:
        """Start folding `batch` (in the background), or fold it now (sequential)."""
        if self._pending:
            raise RuntimeError("Folder.submit: wait() for the previous batch first")
        if not self.background:
            fold_batch(self.states, self.sample, batch, acts, self._pool)
            return
        assert self._pool is not None
        moves = self.sample.offer(batch)  # the caller's thread: no fold is in flight
        self._pending = [
            self._pool.submit(_fold_layer, layer, st, batch, acts[layer], moves, self.per_op)
            for layer, st in self.states.items()]

    def wait(self) -> None:
        """Block until the submitted batch is folded; raise its first error in layer order."""
        pending, self._pending = self._pending, []
        _wait_in_order(pending)

    def folded(self, forwards: Iterable[tuple[Batch, dict[int, torch.Tensor]]]) -> Iterator[Batch]:
        """Fold every (batch, activations) of `forwards`; yield each batch once it is folded.

        The next item of `forwards` (the next forward) is computed while the previous batch is
        folded, and no fold is in flight while the caller holds a yielded batch.
        """
        previous: Batch | None = None
        for batch, acts in forwards:
            if previous is not None:
                self.wait()
                yield previous
            self.submit(batch, acts)
            previous = batch
        if previous is not None:
            self.wait()
            yield previous
