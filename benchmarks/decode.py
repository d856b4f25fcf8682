"""Benchmark `n2g decode`: every neuron of a model through the LM head, against the bare matmuls.

Both are measured in one run, interleaved layer by layer (the machines here are shared and noisy,
so only the ratio is comparable across runs):

- bare: for each layer, the same `[neuron_chunk, d] @ [d, vocab_chunk]` products that decoding
  does (write side, input-projection rows, gate rows), on precomputed directions, results dropped;
- decode: `decode_layer` itself: direction preparation (norm gain), the products, top-k and
  bottom-k per block, merging.

With `--out DIR` the time to write the run (safetensors + SQLite rows) is reported separately.

    .venv/bin/python benchmarks/decode.py                 # all 46,080 neurons of smollm2-135m
    .venv/bin/python benchmarks/decode.py --layers 0-3 --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import torch

from neuron2graph.decode import decode_layer, save_layer
from neuron2graph.decode.stage import create_decode_run
from neuron2graph.decode.weights import FinalNorm, is_gated, neuron_directions, unembedding
from neuron2graph.ids import parse_layers
from neuron2graph.models import load_model


@torch.inference_mode()
def bare_matmuls(dirs: list[torch.Tensor], unembed: torch.Tensor, nc: int, vc: int) -> None:
    for d in dirs:
        for n0 in range(0, d.shape[0], nc):
            block = d[n0 : n0 + nc]
            for v0 in range(0, unembed.shape[0], vc):
                _ = block @ unembed[v0 : v0 + vc].T


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--layers", default=None, help="e.g. 0-3 (default: all)")
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--chunk-size", type=int, default=1024)
    ap.add_argument("--vocab-chunk-size", type=int, default=16384)
    ap.add_argument("--kinds", default="promote,suppress,read,read_gate")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None, help="also time writing a run here")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    lm = load_model(args.model, device=args.device)
    layers = list(range(lm.n_layers)) if args.layers is None else parse_layers(args.layers)
    unembed = unembedding(lm)
    norm = FinalNorm(lm)
    kinds = args.kinds.split(",")
    sides = (["write"] if {"promote", "suppress"} & set(kinds) else []) + [
        s for s in ("read", "read_gate") if s in kinds and (s == "read" or is_gated(lm))
    ]
    nc, vc = args.chunk_size, args.vocab_chunk_size
    sync = torch.cuda.synchronize if lm.device.type == "cuda" else (lambda: None)
    # --out: a decode-only run (as `n2g decode --out` creates) whose SQLite view is written too.
    conn = create_decode_run(Path(args.out), lm).db() if args.out else None

    # Warm-up (first-call allocations, BLAS thread start-up) on one layer, not timed.
    decode_layer(lm, layers[0], top=args.top, neuron_chunk=nc, vocab_chunk=vc, norm=norm,
                 kinds=kinds)
    t_bare = t_full = t_store = 0.0
    for layer in layers:
        dirs = [neuron_directions(lm, layer, s, norm) for s in sides]
        sync()
        t0 = time.perf_counter()
        bare_matmuls(dirs, unembed, nc, vc)
        sync()
        t1 = time.perf_counter()
        dec = decode_layer(lm, layer, top=args.top, neuron_chunk=nc, vocab_chunk=vc, norm=norm,
                           kinds=kinds)
        sync()
        t2 = time.perf_counter()
        t_bare += t1 - t0
        t_full += t2 - t1
        if conn is not None:
            save_layer(args.out, dec, lm, conn)
            t_store += time.perf_counter() - t2

    n_neurons = len(layers) * lm.n_neurons
    flops = 2 * n_neurons * len(sides) * unembed.shape[0] * unembed.shape[1]
    result = {
        "model": lm.spec,
        "neurons": n_neurons,
        "layers": len(layers),
        "vocab": int(unembed.shape[0]),
        "kinds": kinds,
        "sides": sides,
        "top": args.top,
        "chunk": [nc, vc],
        "dtype": str(unembed.dtype),
        "bare_matmul_s": round(t_bare, 2),
        "decode_s": round(t_full, 2),
        "ratio_decode_over_bare": round(t_full / t_bare, 3),
        "neurons_per_s": round(n_neurons / t_full, 1),
        "matmul_gflops": round(flops / t_bare / 1e9, 1),
        "store_s": round(t_store, 2) if conn is not None else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads "
        f"{torch.get_num_threads()}, device {lm.device}",
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key:>24}: {value}")


if __name__ == "__main__":
    main()
