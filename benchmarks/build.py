"""N2G build benchmark: seconds, token-layers and forward share per neuron, vs the official bill.

For N random alive neurons of each chosen layer of the default model (top-20 examples from a run
recorded here on the stdlib corpus, reused when it exists), build the graphs with all neurons of a
layer sharing batches, save them into the run, and print per neuron:

- seconds (forward time attributed by tokens + the layer's non-forward time split evenly);
- model token-layers processed (real tokens x layers actually run, truncated after the layer);
- share of that time inside model forwards;
- the token-layers the official algorithm would run on the same examples (each example forwarded
  once, every-5th-length pruning, full pairwise masking of every pruned and augmented prompt, all
  at full depth) and the ratio.

Everything printed is measured in this run; nothing is hard-coded.

    python benchmarks/build.py --neurons 5 --layers 0,10,20 --tokens 20000
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

from neuron2graph.corpus import describe_corpus, iter_documents, iter_windows
from neuron2graph.ids import NeuronId
from neuron2graph.models import load_model
from neuron2graph.n2g.pipeline import N2GConfig, NeuronRequest, build_graphs
from neuron2graph.record import RecordConfig, record
from neuron2graph.store.run import Run


def calibrate(lm: object) -> float:
    """Token-layers per second of a bare full-depth forward (8 x 64 tokens), measured now."""
    import torch

    ids = torch.randint(100, 10_000, (8, 64))
    model = lm.model  # type: ignore[attr-defined]
    start = time.perf_counter()
    with torch.inference_mode():
        model(input_ids=ids, use_cache=False)
    return ids.numel() * lm.n_layers / (time.perf_counter() - start)  # type: ignore[attr-defined]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--neurons", type=int, default=20, help="neurons per layer")
    ap.add_argument("--layers", default="0,10,20")
    ap.add_argument("--tokens", type=int, default=50_000, help="corpus tokens to record")
    ap.add_argument("--corpus", default="stdlib")
    ap.add_argument("--run", type=Path, default=Path("runs/bench-build"))
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    layers = [int(x) for x in args.layers.split(",")]

    t0 = time.perf_counter()
    lm = load_model("smollm2-135m", device="cpu", dtype="fp32")
    print(f"model loaded in {time.perf_counter() - t0:.1f} s: {lm.n_layers} layers", flush=True)
    t0 = time.perf_counter()
    windows = iter_windows(iter_documents(args.corpus), lm.tokenizer, length=64)
    run = record(lm, windows, layers, args.run,
                 RecordConfig(window=64, top_k=args.top_k, max_tokens=args.tokens),
                 progress=False, corpus=describe_corpus(args.corpus))
    print(f"run {args.run} ready in {time.perf_counter() - t0:.1f} s", flush=True)
    run = Run.open(args.run)

    throughput = [calibrate(lm)]
    print(f"bare full-depth forward now: {throughput[0]:.0f} token-layers/s", flush=True)
    config = N2GConfig(augmenter=None if args.no_augment else "causal")
    rng = random.Random(args.seed)
    header = (f"{'neuron':>8} {'seconds':>8} {'tok-layers':>11} {'fwd share':>9} "
              f"{'official tl':>12} {'ratio':>6} {'nodes':>6} {'aug':>4} flags")
    totals: dict[int, dict[str, float]] = {}
    for layer in layers:
        maxima = run.stats(layer)["max"]
        alive = [i for i in range(len(maxima)) if float(maxima[i]) > 0]
        chosen = sorted(rng.sample(alive, min(args.neurons, len(alive))))
        requests = []
        for n in chosen:
            examples = run.top_examples(NeuronId(layer, n), args.top_k)
            requests.append(NeuronRequest(layer, n, [list(e.token_ids) for e in examples],
                                          run.a_max(NeuronId(layer, n)),
                                          acts=[list(e.acts) for e in examples]))
        start = time.perf_counter()
        results = build_graphs(lm, requests, config)
        wall = time.perf_counter() - start
        print(f"\nlayer {layer}: {len(chosen)} neurons built together in {wall:.1f} s", flush=True)
        print(header)
        fwd = 0.0
        for n, res in zip(chosen, results, strict=True):
            st = res.stats
            run.save_graph(res.graph)
            fwd += st.forward_seconds
            ratio = st.official_token_layers / st.token_layers if st.token_layers else 0.0
            print(f"{layer}:{n:<6} {st.seconds:8.2f} {st.token_layers:11.0f} "
                  f"{st.forward_seconds / st.seconds if st.seconds else 0:9.0%} "
                  f"{st.official_token_layers:12.0f} {ratio:6.1f} {res.graph.n_nodes():6d} "
                  f"{st.augmented_prompts:4d} {'; '.join(st.flags)}")
        for r in results:
            r.stats.flags = [f[:40] for f in r.stats.flags]
        tl = sum(r.stats.token_layers for r in results)
        stages: dict[str, float] = {}
        for r in results:
            for name, v in r.stats.stage_token_layers.items():
                stages[name] = stages.get(name, 0.0) + v
        print("token-layers by stage: " + ", ".join(
            f"{name} {v / tl:.0%}" for name, v in stages.items()) if tl else "")
        off = sum(r.stats.official_token_layers for r in results)
        totals[layer] = {"s_per_neuron": wall / len(chosen), "fwd_share": fwd / wall,
                         "tl": tl / len(chosen), "official": off / len(chosen),
                         "ratio": off / tl if tl else 0.0,
                         "median_ratio": statistics.median(
                             r.stats.official_token_layers / r.stats.token_layers
                             for r in results if r.stats.token_layers)}
    throughput.append(calibrate(lm))
    rate = statistics.mean(throughput)
    print(f"\nbare full-depth forward: {throughput[0]:.0f} token-layers/s before, "
          f"{throughput[1]:.0f} after (machine load varies)")
    print("\nsummary (wall seconds per neuron with a layer's neurons sharing batches)")
    print(f"{'layer':>5} {'s/neuron':>9} {'fwd share':>9} {'tok-layers/neuron':>18} "
          f"{'official tl/neuron':>19} {'ratio':>6} {'median ratio':>12} {'official s est':>14}")
    for layer, t in totals.items():
        print(f"{layer:>5} {t['s_per_neuron']:9.2f} {t['fwd_share']:9.0%} {t['tl']:18.0f} "
              f"{t['official']:19.0f} {t['ratio']:6.1f} {t['median_ratio']:12.1f} "
              f"{t['official'] / rate:14.1f}")
    print("(official s est = official token-layers / the bare full-depth throughput measured "
          "here; a lower bound: it ignores the official code's per-prompt overhead)")
    allw = statistics.mean(t["s_per_neuron"] for t in totals.values())
    print(f"mean over layers: {allw:.2f} s/neuron "
          f"({'no augmentation' if args.no_augment else 'with causal augmentation'}); "
          f"graphs saved in {args.run / 'graphs'}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
