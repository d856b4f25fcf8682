"""Recording throughput vs a bare forward pass, and peak memory at two corpus sizes.

    .venv/bin/python benchmarks/record.py [--model smollm2-135m] [--layers 0-3] [--batch-size 32]
        [--batches 24] [--sizes 20000,60000]

1. Throughput: the same batches of the default corpus go through (a) the bare truncated forward
   (`forward_batch`: pack the windows, run the model up to the deepest recorded layer) and (b) a
   full recording step (`forward_batch` + `fold_batch`: top-K, statistics, histogram, sample),
   alternating a/b batch by batch (the order flips every batch) in one process, so that the
   noise of a shared machine hits both alike. Printed: tokens/s of each and the ratio b/a
   (target >= 0.85).
2. End to end and memory: in a fresh subprocess per corpus size, the whole `record()` call
   (corpus reading, tokenising, windowing, forwards, folding, checkpoints, the final files and
   index; the model is loaded before) and the bare truncated forward over exactly the windows
   `record()` reads (windows prepared beforehand, not timed). By default the two are
   interleaved batch by batch (`--bare interleaved`: after each batch `record()` folds, its
   progress hook runs the bare forward of that same batch, and that time is taken out of
   `record()`'s), so that a change of load on a shared machine hits both alike; `--bare before`
   runs all bare forwards first, as earlier versions did. Printed: both tokens/s and their
   ratio (target >= 0.9), where `record()`'s time went (forward; fold: the part of the fold the
   recording waited for, i.e. not overlapped with the next forward; checkpoints; final write;
   the rest: corpus, tokenising, batching, start-up), CPU seconds of both per 1k tokens, and
   peak RSS (equal peaks at both sizes = memory does not grow with the corpus). `--fold
   background` / `sequential` force the overlap of the fold with the next forward on or off
   (default: as `record()` chooses, on only when the forward runs on an accelerator).

Every figure printed is measured in this run; nothing is hard-coded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path


def throughput(model: str, layers: list[int], batch_size: int, n_batches: int) -> dict[str, float]:
    import torch

    from neuron2graph.corpus import iter_documents, iter_windows
    from neuron2graph.models import load_model
    from neuron2graph.record.recorder import forward_batch

    try:
        from neuron2graph.record.fold import fold_batch, fold_pool
    except ImportError:  # code from before fold.py (A/B runs against older commits)
        from neuron2graph.record.recorder import (  # type: ignore[attr-defined,no-redef]
            fold_batch,
            fold_pool,
        )
    from neuron2graph.record.state import LayerState, SampleState

    lm = load_model(model, device="cpu")
    windows = iter_windows(iter_documents("default"), lm.tokenizer, length=64)
    chunks = [list(islice(windows, batch_size)) for _ in range(n_batches + 2)]
    pad = int(lm.tokenizer.pad_token_id or 0)
    bos = lm.tokenizer.bos_token_id
    states = {layer: LayerState(lm.n_neurons, 20, 64, 256) for layer in layers}
    sample = SampleState(256, 64, 0)
    bare = rec = 0.0
    tokens = 0
    with fold_pool(len(layers)) as pool:  # layers folded as record() folds them
        for i, chunk in enumerate(chunks):
            timed = i >= 2  # two warm-up batches
            for mode in (("bare", "rec") if i % 2 == 0 else ("rec", "bare")):
                t0 = time.perf_counter()
                batch, acts = forward_batch(lm, chunk, layers, 64, pad, bos)
                if mode == "rec":
                    fold_batch(states, sample, batch, acts, pool)
                dt = time.perf_counter() - t0
                if timed:
                    if mode == "bare":
                        bare += dt
                    else:
                        rec += dt
            if timed:
                tokens += sum(len(w.token_ids) for w in chunk)
    return {"threads": torch.get_num_threads(), "tokens": tokens,
            "bare_tok_s": tokens / bare, "record_tok_s": tokens / rec, "ratio": bare / rec}


def _chunks(tok: object, batch_size: int, max_tokens: int) -> list[list[object]]:
    """The windows `record()` reads for `max_tokens`, batched the same way."""
    from neuron2graph.corpus import iter_documents, iter_windows
    from neuron2graph.record.recorder import _batches

    windows = iter_windows(iter_documents("default"), tok, length=64)
    return list(_batches(windows, batch_size, max_tokens, 64))


def bare_over(lm: object, layers: list[int], batch_size: int, max_tokens: int) -> dict[str, float]:
    """The bare truncated forward over the windows `record()` reads for `max_tokens` (the same
    batching), windows prepared before the clock starts."""
    from neuron2graph.record.recorder import forward_batch

    tok = lm.tokenizer  # type: ignore[attr-defined]
    chunks = _chunks(tok, batch_size, max_tokens)
    pad, bos = int(tok.pad_token_id or 0), tok.bos_token_id
    c0, t0 = time.process_time(), time.perf_counter()
    for chunk in chunks:
        forward_batch(lm, chunk, layers, 64, pad, bos)  # type: ignore[arg-type]
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    tokens = sum(len(w.token_ids) for c in chunks for w in c)  # type: ignore[attr-defined]
    return {"tokens": tokens, "seconds": dt, "tok_s": tokens / dt, "cpu_s": cpu}


class Interleaved:
    """`record()`'s progress hook: after each folded batch, the bare forward of that batch
    (timed, wall and CPU). Its overhead outside the timed forward is also counted, so that all
    of it can be taken out of `record()`'s time."""

    def __init__(self, lm: object, layers: list[int], batch_size: int, max_tokens: int) -> None:
        from neuron2graph.record.recorder import forward_batch

        tok = lm.tokenizer  # type: ignore[attr-defined]
        self.forward = forward_batch  # before `_timed` wraps the module's name
        self.lm, self.layers = lm, layers
        self.chunks = _chunks(tok, batch_size, max_tokens)
        self.pad, self.bos = int(tok.pad_token_id or 0), tok.bos_token_id
        self.seconds = self.cpu = self.hook = 0.0
        self.tokens = 0

    def __call__(self, progress: dict[str, object]) -> None:
        h0 = time.perf_counter()
        chunk = self.chunks[int(progress["run_batches"]) - 1]  # type: ignore[call-overload]
        c0, t0 = time.process_time(), time.perf_counter()
        self.forward(self.lm, chunk, self.layers, 64, self.pad, self.bos)
        self.seconds += time.perf_counter() - t0
        self.cpu += time.process_time() - c0
        self.tokens += sum(len(w.token_ids) for w in chunk)
        self.hook += time.perf_counter() - h0


def _timed(module: object, name: str, acc: dict[str, float], label: str) -> None:
    """Wrap `module.name` so that its seconds add up under `acc[label]`."""
    fn = getattr(module, name)

    def wrapper(*a: object, **kw: object) -> object:
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            acc[label] = acc.get(label, 0.0) + time.perf_counter() - t0

    setattr(module, name, wrapper)


def peak_memory_child(
    model: str, layers: list[int], batch_size: int, max_tokens: int, bare_mode: str, fold: str
) -> None:
    """Run in a subprocess: `record()` over `max_tokens` tokens and the bare forward over the
    same windows; print JSON with both speeds, where record()'s time went, and its peak RSS."""
    from neuron2graph.corpus import describe_corpus, iter_documents, iter_windows
    from neuron2graph.models import load_model
    from neuron2graph.record import RecordConfig, record, recorder

    lm = load_model(model, device="cpu")
    rss_model = _status_kb("VmRSS")
    bare = bare_over(lm, layers, batch_size, max_tokens) if bare_mode == "before" else None
    hook = Interleaved(lm, layers, batch_size, max_tokens) if bare is None else None
    parts: dict[str, float] = {}
    folder = getattr(recorder, "Folder", None)
    fold_mode = fold
    if folder is None:  # code from before the pipeline: the fold is one call per batch
        _timed(recorder, "fold_batch", parts, "fold")
        fold_mode = "in the recording thread (code before the pipeline)"
    else:
        if fold != "auto":
            forced = fold == "background"

            def make(states: object, sample: object, **_: object) -> object:
                return folder(states, sample, background=forced)

            recorder.Folder = make  # type: ignore[attr-defined]
        _timed(folder, "submit", parts, "fold")
        _timed(folder, "wait", parts, "fold")
    for name, label in (("forward_batch", "forward"), ("save_checkpoint", "checkpoints"),
                        ("finalize", "final write")):
        _timed(recorder, name, parts, label)
    reset = _reset_peak()  # loading the model peaks higher than it settles: measure from here
    with tempfile.TemporaryDirectory() as tmp:
        c0, t0 = time.process_time(), time.perf_counter()
        windows = iter_windows(iter_documents("default"), lm.tokenizer, length=64)
        run = record(lm, windows, layers, Path(tmp) / "run",
                     RecordConfig(batch_size=batch_size, max_tokens=max_tokens),
                     progress=False, corpus=describe_corpus("default"), on_batch=hook)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        tokens = int(run.manifest["tokens"])
    if hook is not None:
        dt -= hook.hook
        cpu -= hook.cpu
        bare = {"tokens": hook.tokens, "seconds": hook.seconds,
                "tok_s": hook.tokens / hook.seconds, "cpu_s": hook.cpu}
    rss = _status_kb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    parts["rest"] = dt - sum(parts.values())
    print(json.dumps({"tokens": tokens, "seconds": dt, "tok_s": tokens / dt, "cpu_s": cpu,
                      "bare": bare, "bare_mode": bare_mode, "fold_mode": fold_mode,
                      "parts": parts,
                      "peak_rss_mb": rss / 1024, "rss_after_model_load_mb": rss_model / 1024,
                      "peak_reset": reset, "load": os.getloadavg()[0]}))


def _status_kb(field: str) -> int:
    """A memory figure (kB) from /proc/self/status; 0 where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--layers", default="0-3")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--batches", type=int, default=24,
                    help="timed batches per mode (0: skip part 1)")
    ap.add_argument("--sizes", default="20000,60000",
                    help="corpus sizes (tokens), comma-separated; the default corpus holds ~4M")
    ap.add_argument("--bare", choices=("interleaved", "before"), default="interleaved",
                    help="bare forwards batch by batch between record()'s batches, or all first")
    ap.add_argument("--fold", choices=("auto", "background", "sequential"), default="auto",
                    help="record()'s fold: as record() chooses (overlapped with the next forward "
                    "on an accelerator only), always overlapped, or never")
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()

    from neuron2graph.ids import parse_layers

    layers = parse_layers(args.layers)
    if args.child:
        peak_memory_child(args.model, layers, args.batch_size, args.child, args.bare, args.fold)
        return
    import torch

    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, python {platform.python_version()}")
    print(f"model {args.model}, layers {layers}, batch {args.batch_size} x 64 tokens")
    if args.batches:
        t = throughput(args.model, layers, args.batch_size, args.batches)
        print(f"bare forward : {t['bare_tok_s']:8.0f} tokens/s")
        print(f"recording    : {t['record_tok_s']:8.0f} tokens/s")
        print(f"ratio        : {t['ratio']:.3f}  (recording / bare, {t['tokens']} tokens per "
              "mode, interleaved, fold not overlapped; target >= 0.85)")
    for size in (int(s) for s in args.sizes.split(",")):
        cmd = [sys.executable, __file__, "--model", args.model, "--layers", args.layers,
               "--batch-size", str(args.batch_size), "--bare", args.bare, "--fold", args.fold,
               "--child", str(size)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        m = json.loads(out.strip().splitlines()[-1])
        what = "peak RSS while recording" if m["peak_reset"] else "peak RSS incl. model load"
        bare = m["bare"]
        print(f"record() over {m['tokens']:>7} tokens: {m['tok_s']:.0f} tokens/s end to end "
              f"({m['seconds']:.1f} s) vs bare truncated forward {bare['tok_s']:.0f} tokens/s on "
              f"the same {bare['tokens']} tokens ({m['bare_mode']}): ratio "
              f"{m['tok_s'] / bare['tok_s']:.2f} (target >= 0.9); fold {m['fold_mode']}")
        print("    record() time: " + ", ".join(
            f"{k} {v:.1f} s ({v / m['seconds']:.0%})" for k, v in m["parts"].items()))
        print(f"    record() vs its own forward time: ratio "
              f"{m['parts']['forward'] / m['seconds']:.2f} (biased up when the fold overlaps "
              "the forward: a forward slowed by the concurrent fold counts as forward)")
        print(f"    CPU seconds per 1k tokens: record() {1e3 * m['cpu_s'] / m['tokens']:.3f}, "
              f"bare {1e3 * bare['cpu_s'] / bare['tokens']:.3f}: ratio "
              f"{(bare['cpu_s'] / bare['tokens']) / (m['cpu_s'] / m['tokens']):.2f} "
              f"(load average at the end {m['load']:.1f})")
        print(f"    {what} {m['peak_rss_mb']:.0f} MB "
              f"(RSS after model load {m['rss_after_model_load_mb']:.0f} MB)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
