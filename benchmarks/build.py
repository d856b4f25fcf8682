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

With `--reference`, the official schedule is also *run* here, on the same model, machine and
load, for the first `--reference-neurons` neurons of each layer: every forward the official
algorithm makes on those examples and prompts (each example once; pruning lengths 5, 10, ... four
per batch; every pruned and augmented prompt with all its single-position masked copies in one
batch), at full depth through the LM head, as the official TransformerLens code does. It leaves
out the official code's fill-mask (BERT) forwards and its per-prompt Python overhead, so it is a
lower bound on the official code's time, and "ours vs reference" a lower bound on the speed-up.

Everything printed is measured in this run; nothing is hard-coded.

    python benchmarks/build.py --neurons 5 --layers 0,10,20 --tokens 20000
    python benchmarks/build.py --neurons 3 --layers 0,10,20 --tokens 20000 --reference
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

from neuron2graph.corpus import describe_corpus, iter_documents, iter_windows
from neuron2graph.errors import N2GError
from neuron2graph.ids import NeuronId
from neuron2graph.models import load_model
from neuron2graph.n2g.graph_io import save_graph
from neuron2graph.n2g.pipeline import BuildStats, N2GConfig, NeuronRequest, build_graphs
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


OFFICIAL_ANCHOR_S = {0: 36.0, 10: 64.0, 20: 90.0}
"""The official code's own seconds per neuron with augmentation, measured on this kind of machine
at another time (DESIGN.md section 6), for the layers it was measured at."""


def run_reference(lm: object, stats: BuildStats, prune_batch: int = 4) -> float:
    """Seconds to run the official schedule recorded in `stats.official_forwards` (full depth,
    LM head included; token ids drawn at random: a forward's cost does not depend on them)."""
    import torch

    model = lm.model  # type: ignore[attr-defined]
    gen = torch.Generator().manual_seed(0)
    shapes: list[tuple[int, int]] = []
    prune: list[int] = []
    for stage, rows, n in stats.official_forwards:
        if stage == "prune":
            prune.append(n)
            if len(prune) == prune_batch:
                shapes.append((len(prune), max(prune)))
                prune = []
        else:
            shapes.append((rows, n))
    if prune:
        shapes.append((len(prune), max(prune)))
    start = time.perf_counter()
    with torch.inference_mode():
        for rows, n in shapes:
            ids = torch.randint(100, 10_000, (rows, n), generator=gen)
            model(input_ids=ids, use_cache=False)
    return time.perf_counter() - start


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
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads (0: torch's default); 1 wastes less on a loaded machine")
    ap.add_argument("--reference", action="store_true",
                    help="also run the official schedule on the same examples (slow)")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"],
                    help="our build's dtype; bf16 uses the CPU's bf16 matmul units (AMX) where "
                    "present. The reference always runs in fp32 (the official code's), and "
                    "with bf16 also in bf16, so the numeric and the algorithmic gain show apart")
    ap.add_argument("--reference-neurons", type=int, default=1,
                    help="with --reference: run it for this many neurons of each layer")
    args = ap.parse_args()
    layers = [int(x) for x in args.layers.split(",")]
    import os

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at start", flush=True)

    t0 = time.perf_counter()
    lm = load_model("smollm2-135m", device="cpu", dtype=args.dtype)
    ref_lms = {"fp32": lm if args.dtype == "fp32" else
               load_model("smollm2-135m", device="cpu", dtype="fp32")}
    if args.dtype != "fp32":
        ref_lms[args.dtype] = lm
    print(f"model ({args.dtype}) loaded in {time.perf_counter() - t0:.1f} s: {lm.n_layers} "
          "layers", flush=True)
    t0 = time.perf_counter()
    try:  # a finished run that holds these layers (e.g. recorded for more layers) is reused
        run = Run.open(args.run)
        reuse = set(layers) <= set(run.layers)
    except N2GError:
        reuse = False
    if not reuse:
        windows = iter_windows(iter_documents(args.corpus), lm.tokenizer, length=64)
        record(ref_lms["fp32"], windows, layers, args.run,
               RecordConfig(window=64, top_k=args.top_k, max_tokens=args.tokens),
               progress=False, corpus=describe_corpus(args.corpus))
    print(f"run {args.run} ready in {time.perf_counter() - t0:.1f} s"
          + (" (reused)" if reuse else ""), flush=True)
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
            save_graph(run.path, res.graph)
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
        if args.reference:
            firsts = list(zip(chosen, results, strict=True))[: args.reference_neurons]
            for dt, ref_lm in ref_lms.items():
                ref = [(n, res.stats.seconds, run_reference(ref_lm, res.stats))
                       for n, res in firsts]
                for n, ours, theirs in ref:
                    print(f"reference {layer}:{n}: official schedule in {dt} {theirs:.1f} s vs "
                          f"ours ({args.dtype}) {ours:.2f} s (this neuron's share of the layer) "
                          f"= {theirs / ours:.1f}x", flush=True)
                key = "" if dt == "fp32" else "_" + dt
                totals.setdefault(layer, {}).update(
                    {"ref_s" + key: statistics.mean(t for _n, _o, t in ref),
                     "ours_ref_s": statistics.mean(o for _n, o, _t in ref)})
        off = sum(r.stats.official_token_layers for r in results)
        totals.setdefault(layer, {}).update({"s_per_neuron": wall / len(chosen),
                                             "fwd_share": fwd / wall,
                         "tl": tl / len(chosen), "official": off / len(chosen),
                         "ratio": off / tl if tl else 0.0,
                         "median_ratio": statistics.median(
                             r.stats.official_token_layers / r.stats.token_layers
                             for r in results if r.stats.token_layers)})
    throughput.append(calibrate(lm))
    rate = statistics.mean(throughput)
    print(f"\nbare full-depth forward: {throughput[0]:.0f} token-layers/s before, "
          f"{throughput[1]:.0f} after (machine load varies; load average "
          f"{os.getloadavg()[0]:.1f} at the end)")
    print("\nsummary (wall seconds per neuron with a layer's neurons sharing batches)")
    print(f"{'layer':>5} {'s/neuron':>9} {'fwd share':>9} {'tok-layers/neuron':>18} "
          f"{'official tl/neuron':>19} {'ratio':>6} {'median ratio':>12} {'official s est':>14}")
    for layer, t in totals.items():
        print(f"{layer:>5} {t['s_per_neuron']:9.2f} {t['fwd_share']:9.0%} {t['tl']:18.0f} "
              f"{t['official']:19.0f} {t['ratio']:6.1f} {t['median_ratio']:12.1f} "
              f"{t['official'] / rate:14.1f}")
    print("(official s est = official token-layers / the bare full-depth throughput measured "
          "here; a lower bound: it ignores the official code's per-prompt overhead)")
    if args.reference:
        print(f"\nours vs the official schedule run here (reference; the first "
              f"{args.reference_neurons} neuron(s) of each layer, ours = their share of the "
              "layer's time) and vs the official code's own anchor seconds (DESIGN.md, measured "
              "at another time; ours = the layer's mean)")
        other = "" if args.dtype == "fp32" else f" {'ref ' + args.dtype + ' s':>11} {'vs it':>6}"
        print(f"{'layer':>5} {'ours s':>7} {'reference s':>11} {'vs reference':>12}{other} "
              f"{'ours mean s':>11} {'anchor s':>8} {'vs anchor':>9}")
        for layer, t in totals.items():
            anchor = OFFICIAL_ANCHOR_S.get(layer)
            same = (f" {t['ref_s_' + args.dtype]:11.1f} "
                    f"{t['ref_s_' + args.dtype] / t['ours_ref_s']:5.1f}x" if other else "")
            print(f"{layer:>5} {t['ours_ref_s']:7.2f} {t['ref_s']:11.1f} "
                  f"{t['ref_s'] / t['ours_ref_s']:11.1f}x{same} {t['s_per_neuron']:11.2f} "
                  + (f"{anchor:8.0f} {anchor / t['s_per_neuron']:8.1f}x" if anchor else ""))
        ours_ref = statistics.mean(t["ours_ref_s"] for t in totals.values())
        ours = statistics.mean(t["s_per_neuron"] for t in totals.values())
        ref_mean = statistics.mean(t["ref_s"] for t in totals.values())
        print(f"mean over layers: ours {ours_ref:.2f} s/neuron, reference {ref_mean:.1f} s: "
              f"{ref_mean / ours_ref:.1f}x (goal: >= 10x; reference in fp32, ours in "
              f"{args.dtype})")
        anchors = [OFFICIAL_ANCHOR_S[la] for la in totals if la in OFFICIAL_ANCHOR_S]
        if len(anchors) == len(totals):
            print(f"vs the anchor's mean over these layers ({statistics.mean(anchors):.0f} s): "
                  f"{statistics.mean(anchors) / ours:.1f}x")
    allw = statistics.mean(t["s_per_neuron"] for t in totals.values())
    print(f"mean over layers: {allw:.2f} s/neuron "
          f"({'no augmentation' if args.no_augment else 'with causal augmentation'}); "
          f"graphs saved in {args.run / 'graphs'}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
