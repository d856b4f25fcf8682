"""Search benchmark: query latency over 50,000 synthetic graphs, similar pairs, indexing speed.

Usage: .venv/bin/python benchmarks/search.py [--graphs 50000] [--repeats 30] [--seed 0]

The index lives in a file-backed SQLite db in WAL mode (as in a run), filled with Zipf-distributed
synthetic graphs (`neuron2graph.search.synthetic`): common tokens hit tens of thousands of graphs,
which is the slow case. Prints what it measured; nothing is hard-coded.
"""

from __future__ import annotations

import argparse
import platform
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from neuron2graph.n2g.graph import NeuronGraph
from neuron2graph.search import (
    connect,
    index_run,
    is_stale,
    neurons_by_components,
    search_neurons,
    similar_neurons,
    similar_pairs,
)
from neuron2graph.search.synthetic import fill_synthetic, token


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    out, times = None, []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return times, out


def row(name: str, times: list[float], hits: int | str) -> None:
    print(
        f"  {name:<52} p50 {pct(times, 0.5):7.1f}  p90 {pct(times, 0.9):7.1f}  "
        f"max {max(times):7.1f} ms   hits {hits}"
    )


def bench_index(n_files: int, seed: int) -> None:
    """index_run over real graph files (build, save, index), and the staleness check."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        for i in range(n_files):
            g = NeuronGraph(f"{i % 10}:{i}")
            for _ in range(rng.randint(1, 4)):
                ctx: list[tuple[str, float] | None] = [
                    (token(int(rng.paretovariate(1.2)) % 50_000), 0.75 + rng.random() / 4)
                    if rng.random() < 0.6
                    else None
                    for _ in range(rng.randint(1, 6))
                ]
                g.add_path(token(rng.randrange(2000)), 0.5 + rng.random() / 2, ctx)
            g.save(run / "graphs" / str(i % 10) / f"{i % 10}_{i}.json")
        conn = connect(run)
        t = time.perf_counter()
        rep = index_run(run, conn=conn, progress=False)
        full = time.perf_counter() - t
        t = time.perf_counter()
        stale = is_stale(run, conn=conn)
        check = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        index_run(run, conn=conn, progress=False, force=True)
        forced = time.perf_counter() - t
        conn.close()
    print(f"indexing {rep.indexed} graph files: {full:.2f} s ({rep.indexed / full:.0f} "
          f"graphs/s); forced re-index {forced:.2f} s; staleness check {check:.2f} ms "
          f"(stale={stale})")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--graphs", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--index-files", type=int, default=2000)
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {platform.processor() or '?'}, "
          f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}")  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        conn = connect(Path(tmp))
        t = time.perf_counter()
        fill_synthetic(conn, args.graphs, seed=args.seed)
        n_rows = conn.execute("SELECT COUNT(*) FROM graph_tokens").fetchone()[0]
        print(f"{args.graphs} synthetic graphs, {n_rows} token rows, written in "
              f"{time.perf_counter() - t:.1f} s")  # fmt: skip
        df = dict(conn.execute(
            "SELECT token, COUNT(*) FROM graph_tokens WHERE token IN (?, ?, ?) GROUP BY token",
            (token(0), token(1), token(900)),
        ))  # fmt: skip
        print(f"graphs holding {token(0)!r}: {df.get(token(0))}, {token(1)!r}: "
              f"{df.get(token(1))}, {token(900)!r}: {df.get(token(900))}")  # fmt: skip
        queries: list[tuple[str, dict[str, Any]]] = [
            ("activating w0 (most common token)", {"activating": [token(0)]}),
            ("important w1", {"important": [token(1)]}),
            ("any w2 AND activating w0", {"any": [token(2)], "activating": [token(0)]}),
            ("activating w3 AND important w0 AND important w5",
             {"activating": [token(3)], "important": [token(0), token(5)]}),
            ("any w900 (rare token)", {"any": [token(900)]}),
            ("activating w0, folded", {"activating": ["W0"], "fold": True}),
        ]  # fmt: skip
        print(f"search_neurons, limit 20, {args.repeats} repeats each:")
        all_times: list[float] = []
        for name, kw in queries:
            times, res = timed(partial(search_neurons, conn, **kw, limit=20), args.repeats)
            all_times += times
            row(name, times, len(res))
        row("all search queries together", all_times, "-")
        times, res = timed(lambda: neurons_by_components(conn, 4, limit=50), args.repeats)
        row("neurons_by_components(min 4)", times, len(res))

        rng = random.Random(args.seed)
        ids = [f"{a}:{b}" for a, b in conn.execute("SELECT layer, neuron FROM graph_stats")]
        picks = rng.sample(ids, min(args.repeats, len(ids)))
        sim_times: list[float] = []
        for nid in picks:
            one, _ = timed(partial(similar_neurons, conn, nid, 10), 1)
            sim_times += one
        row(f"similar_neurons(top 10), {len(picks)} random neurons", sim_times, "-")
        for threshold in (0.9, 0.8):
            t = time.perf_counter()
            pairs = similar_pairs(conn, threshold)
            print(f"  similar_pairs(threshold {threshold}): {time.perf_counter() - t:.2f} s, "
                  f"{len(pairs)} pairs")  # fmt: skip
        conn.close()
    bench_index(args.index_files, args.seed)
    print(f"(median of all search queries: {statistics.median(all_times):.1f} ms)")


if __name__ == "__main__":
    main()
