"""Explain/score benchmark: scored units per minute, in-process judge vs HTTP judge.

On a run that already holds explanations (`n2g explain`), re-score the chosen units with the
detection and fuzzing scorers twice: once with the judge in-process (LocalChat) and once through
HTTP against `n2g llm-serve` serving the same model on loopback (OpenAIChat). Prints units per
minute, judge calls, and the share of the wall time spent waiting on the model (in-process: inside
the model; HTTP: inside requests, i.e. model + server + transport). Everything printed is
measured in this run.

    python benchmarks/explain.py RUN --layers 0,10 --per-layer 5 [--model smollm2-135m]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

from neuron2graph.explain.examples import ExampleConfig
from neuron2graph.explain.llm import LocalChat, OpenAIChat
from neuron2graph.explain.pipeline import Graphs, load_examples, load_explanations, select_units
from neuron2graph.explain.scoring import Scorers, score_unit
from neuron2graph.ids import parse_layers
from neuron2graph.store.run import Run

SCORERS = ("detection", "fuzz")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(model: str, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "neuron2graph", "llm-serve", "--model", model,
                             "--port", str(port), "--name", "bench"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = OpenAIChat("bench", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0,
                       timeout=5)
    for _ in range(300):
        try:
            probe.client.models.list()
            return proc
        except Exception:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("llm-serve did not start")


def bench(run: Run, nids: list, cfg: ExampleConfig, judge: object, label: str) -> None:
    """Score in memory (the run's score files are left alone: this measures, it does not
    store)."""
    sc = Scorers(SCORERS, judge=judge)
    graphs = Graphs(run)
    t0 = time.perf_counter()
    rows = []
    for nid in nids:
        ex = load_examples(run, nid, cfg)
        rows.append(score_unit(ex, graphs.get([(nid, ex)])[nid],
                               load_explanations(run.path, nid), sc, cfg))
    wall = time.perf_counter() - t0
    calls = sum((m.get(s) or {}).get("n", 0) + (m.get(s) or {}).get("failed", 0)
                for row in rows for k, m in row["methods"].items()
                if k.startswith("sentence:") for s in SCORERS)
    model_s = float(getattr(judge, "seconds", 0.0))
    print(f"{label:>10}: {len(rows)} units in {wall:.1f} s = "
          f"{60 * len(rows) / wall:.1f} units/min; {calls} judge calls "
          f"({calls / wall:.1f}/s); {100 * model_s / wall:.0f}% of wall time in judge calls")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--layers", default=None)
    ap.add_argument("--per-layer", type=int, default=5)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    run = Run.open(args.run)
    cfg = ExampleConfig()
    sel = select_units(run, cfg, layers=parse_layers(args.layers) if args.layers else None,
                       per_layer=args.per_layer)
    print(f"{len(sel.selected)} units, scorers {','.join(SCORERS)}, judge {args.model}")
    bench(run, sel.selected, cfg, LocalChat(args.model, batch_size=args.concurrency), "in-process")
    port = _port()
    proc = _serve(args.model, port)
    try:
        judge = OpenAIChat("bench", base_url=f"http://127.0.0.1:{port}/v1",
                           concurrency=args.concurrency, timeout=120)
        bench(run, sel.selected, cfg, judge, "HTTP")
    finally:
        proc.kill()


if __name__ == "__main__":
    main()
