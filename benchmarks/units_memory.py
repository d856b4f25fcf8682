"""Peak memory of recording many sparse units: dense vs sparse random sample.

    .venv/bin/python benchmarks/units_memory.py [--units 9216] [--k 32] [--sample 256]
        [--window 64] [--top-k 20] [--max-tokens 20000]

Records one layer of a tiny random-init Llama through a fake SAE source (`random_latents`:
TopK(ReLU(W x)) of the residual stream, `--units` latents, at most `--k` nonzero per token),
once keeping the random sample dense (`[S, T, units]` float16, as for neurons) and once sparse
(nonzeros only), each in a fresh subprocess, and prints each run's peak RSS (ru_maxrss, the
model and torch included) and the size of the layer file. A third run with `--units 1` gives the
fixed cost. Every figure printed is measured in this run; nothing is hard-coded.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys
from pathlib import Path
from neuron2graph.corpus import iter_windows
from neuron2graph.corpus.builtin import iter_default
from neuron2graph.record import RecordConfig, record
from neuron2graph.testing import random_latents, tiny_model
a = json.loads(sys.argv[1])
lm = tiny_model("llama", n_layers=2)
source = random_latents(lm, a["units"], k=a["k"], sparse=a["sparse"])
windows = iter_windows(iter_default(), lm.tokenizer, length=a["window"])
config = RecordConfig(window=a["window"], top_k=a["top_k"], sample=a["sample"], batch_size=16,
                      max_tokens=a["max_tokens"])
run = record(lm, windows, [1], a["out"], config, progress=False, source=source)
size = (Path(a["out"]) / "record" / "layer_1.safetensors").stat().st_size
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "layer_file_mb": size / 2**20, "tokens": run.manifest["tokens"]}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=9216)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--sample", type=int, default=256)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--max-tokens", type=int, default=20000)
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, python {platform.python_version()}")
    print(f"units={args.units} k={args.k} sample={args.sample} window={args.window} "
          f"top_k={args.top_k} max_tokens={args.max_tokens}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, units, sparse in (("fixed cost (1 unit)", 1, False),
                                     ("dense sample", args.units, False),
                                     ("sparse sample", args.units, True)):
            child = {"units": units, "k": min(args.k, units), "sparse": sparse,
                     "sample": args.sample, "window": args.window, "top_k": args.top_k,
                     "max_tokens": args.max_tokens, "out": str(Path(tmp) / label.split()[0])}
            done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(child)],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(f"{label}: failed\n{done.stderr[-2000:]}")
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{label:22s} peak RSS {r['peak_rss_mb']:8.1f} MB   layer file "
                  f"{r['layer_file_mb']:8.1f} MB   ({r['tokens']} tokens)")


if __name__ == "__main__":
    main()
